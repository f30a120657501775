//! Where output goes and whether it is coloured.

use std::io::{BufRead, IsTerminal, Write};

use ferry_plan::render::TextOptions;

use crate::args::ColorChoice;

/// stdout for results (plans, snapshots, graphs), stderr for everything said to the operator.
#[derive(Debug)]
pub struct Output {
    choice: ColorChoice,
}

impl Output {
    pub fn new(choice: ColorChoice) -> Self {
        Self { choice }
    }

    fn color_for(&self, is_terminal: bool) -> bool {
        match self.choice {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                is_terminal && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
            }
        }
    }

    pub fn stdout_color(&self) -> bool {
        self.color_for(std::io::stdout().is_terminal())
    }

    pub fn stderr_color(&self) -> bool {
        self.color_for(std::io::stderr().is_terminal())
    }

    pub fn text_options(&self) -> TextOptions {
        TextOptions {
            color: self.stdout_color(),
        }
    }

    pub fn stdout(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }

    /// Writes text to stdout in the pieces `write` hands its sink, as they come.
    pub fn stdout_pieces(&self, write: impl FnOnce(&mut dyn FnMut(&str))) {
        let mut out = std::io::stdout().lock();
        write(&mut |piece| {
            let _ = out.write_all(piece.as_bytes());
        });
        let _ = out.flush();
    }

    pub fn stderr(&self, text: &str) {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(text.as_bytes());
        let _ = err.flush();
    }

    /// Asks `question` on the terminal; true only for the answer `yes`. Without a terminal on
    /// stdin nothing is asked: `command` (`ferry apply`) is refused, saying to review `shown`
    /// (`the plan`) and pass `--auto-approve`.
    pub fn confirm(&self, command: &str, shown: &str, question: &str) -> anyhow::Result<bool> {
        if !std::io::stdin().is_terminal() {
            anyhow::bail!(
                "{command} needs a confirmation and stdin is not a terminal: review {shown}, then pass --auto-approve"
            );
        }
        self.stderr(&format!("\n{question} Only 'yes' is accepted: "));
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        Ok(answer.trim() == "yes")
    }

    pub fn error(&self, message: &str) {
        let label = if self.stderr_color() {
            "\x1b[31;1merror:\x1b[0m"
        } else {
            "error:"
        };
        // Messages that label their own lines (a plan's problems, one `error:` each) are
        // printed as they are, never as `error: error: ...`.
        let message = message.strip_prefix("error: ").unwrap_or(message);
        self.stderr(&format!("{label} {message}\n"));
    }
}
