//! Spec errors: what is wrong, where (file and byte span), and what to do, rendered by miette.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use miette::{
    Diagnostic, GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteError,
    MietteSpanContents, NamedSource, Severity, SourceCode, SourceSpan, SpanContents,
};

/// One loaded spec file: its name as shown in messages and its text.
#[derive(Debug, Clone)]
pub(crate) struct SourceFile {
    /// Its rank among the spec's files, which orders problems as a reader meets them.
    pub(crate) index: usize,
    pub(crate) name: String,
    pub(crate) text: Arc<str>,
    named: Arc<NamedSource<Arc<str>>>,
}

impl SourceFile {
    pub(crate) fn new(index: usize, name: String, text: String) -> Arc<Self> {
        let text: Arc<str> = Arc::from(text);
        let named = Arc::new(NamedSource::new(&name, Arc::clone(&text)));
        Arc::new(Self {
            index,
            name,
            text,
            named,
        })
    }

    /// `file:line:column`, 1-based, of a byte offset; columns count characters.
    pub(crate) fn position(&self, offset: usize) -> String {
        let offset = floor_char_boundary(&self.text, offset);
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |index| index + 1);
        let column = before[line_start..].chars().count() + 1;
        format!("{}:{line}:{column}", self.name)
    }
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// The longest line shown whole around a problem. Longer ones are cut to a window around the
/// offending text: miette cannot pad a line past 65,535 characters (it panics), and nobody
/// reads one that long either.
const LONGEST_SHOWN_LINE: usize = 1_000;

/// How much of a cut line is shown on each side of the offending text, and of the text itself.
const EXCERPT_MARGIN: usize = 60;

/// A window of one long line around a problem, in the file's own offsets, so that the line and
/// column miette shows stay the file's.
#[derive(Debug, Clone)]
struct Excerpt {
    name: String,
    text: String,
    /// The window's byte offset in the file.
    start: usize,
    /// 0-based line and column (in characters) of the window's start.
    line: usize,
    column: usize,
    /// The problem's span, cut to the window.
    span: Range<usize>,
}

impl Excerpt {
    /// The window to show instead of the lines around `span`, when one of them is too long.
    fn around(file: &SourceFile, span: &Range<usize>) -> Option<Self> {
        let text = &*file.text;
        let start = floor_char_boundary(text, span.start);
        let line_start = text[..start].rfind('\n').map_or(0, |index| index + 1);
        // The line before, the problem's lines and the line after: what miette would show.
        let context_start = text[..line_start.saturating_sub(1)]
            .rfind('\n')
            .map_or(0, |index| index + 1);
        let end = floor_char_boundary(text, span.end.max(start));
        let context_end = text[end..]
            .match_indices('\n')
            .nth(1)
            .map_or(text.len(), |(index, _)| end + index);
        let too_long = text[context_start..context_end]
            .split('\n')
            .any(|line| line.len() > LONGEST_SHOWN_LINE);
        if !too_long {
            return None;
        }
        let line_end = text[start..]
            .find('\n')
            .map_or(text.len(), |index| start + index);
        let span_end = end.min(line_end).min(start + EXCERPT_MARGIN);
        let span_end = floor_char_boundary(text, span_end);
        let window_start =
            floor_char_boundary(text, start.saturating_sub(EXCERPT_MARGIN).max(line_start));
        let window_end = floor_char_boundary(text, (span_end + EXCERPT_MARGIN).min(line_end));
        Some(Self {
            name: file.name.clone(),
            text: text[window_start..window_end].to_owned(),
            start: window_start,
            line: text[..line_start].matches('\n').count(),
            column: text[line_start..window_start].chars().count(),
            span: start..span_end,
        })
    }
}

impl SourceCode for Excerpt {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        before: usize,
        after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        // Asked for the problem itself (the header's line and column): exactly that.
        if before == 0 && after == 0 {
            let from = span
                .offset()
                .clamp(self.start, self.start + self.text.len())
                - self.start;
            let to = (from + span.len()).min(self.text.len());
            let column = self.column + self.text.get(..from).map_or(0, |text| text.chars().count());
            let data = self.text.get(from..to).unwrap_or_default().as_bytes();
            return Ok(Box::new(MietteSpanContents::new_named(
                self.name.clone(),
                data,
                (self.start + from, data.len()).into(),
                self.line,
                column,
                1,
            )));
        }
        Ok(Box::new(MietteSpanContents::new_named(
            self.name.clone(),
            self.text.as_bytes(),
            (self.start, self.text.len()).into(),
            self.line,
            self.column,
            1,
        )))
    }
}

/// Where a problem is: a span of one file.
#[derive(Debug, Clone)]
pub(crate) struct Place {
    pub(crate) file: Arc<SourceFile>,
    pub(crate) span: Range<usize>,
}

/// What is wrong, one variant per kind of mistake a spec can hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    #[error("cannot read {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("{path} holds no .toml files")]
    NoSpecFiles { path: String },
    #[error("{message}")]
    Syntax { message: String },
    #[error("unknown block `[{name}]`")]
    UnknownBlock { name: String },
    #[error("unknown resource kind `{name}`")]
    UnknownKind { name: String },
    #[error("unknown key `{key}` in {within}")]
    UnknownKey { key: String, within: String },
    #[error("{what} must be {expected}, not {found}")]
    WrongType {
        what: String,
        expected: String,
        found: String,
    },
    #[error("{within} is missing the required field `{field}`")]
    MissingField { within: String, field: String },
    #[error("the spec has no [{block}] block")]
    MissingBlock { block: String },
    #[error("{what} must be a table")]
    NotATable { what: String },
    #[error("`{name}` is not a valid resource name")]
    BadResourceName { name: String },
    #[error("{what} is defined more than once")]
    Duplicate { what: String },
    #[error("first defined here")]
    FirstDefinedHere,
    #[error("{message}")]
    Note { message: String },
    #[error("`{value}` is not a valid {what}")]
    BadChoice { what: String, value: String },
    #[error("`{text}` is not a resource address")]
    BadAddress { text: String },
    #[error("{address} does not exist")]
    UnknownResource { address: String },
    #[error("`{field}` must name a {expected}, but {address} is a {found}")]
    WrongKind {
        field: String,
        expected: String,
        address: String,
        found: String,
    },
    #[error("{address} has no output `{output}`")]
    UnknownOutput { address: String, output: String },
    #[error("{message}")]
    Template { message: String },
    #[error("`${{{expression}}}` cannot be used in {block}")]
    ExpressionInBlock { expression: String, block: String },
    #[error("dependency cycle: {path}")]
    Cycle { path: String },
    #[error("{address}: {message}")]
    Invalid { address: String, message: String },
    #[error("undefined variable `{name}`")]
    UndefinedVariable { name: String },
    #[error("environment variable `{name}` is not set")]
    UnsetEnvironment { name: String },
    #[error("--var {name} sets a variable that [variables] does not declare")]
    UndeclaredVariable { name: String },
    #[error("failover trigger {address} is not a replaceable resource")]
    BadTrigger { address: String },
    #[error(
        "{address} is marked standby = true, but it needs {dependency}, which a standby generation does not have ({why})"
    )]
    StandbyNeedsData {
        address: String,
        dependency: String,
        why: String,
    },
    #[error("the name of {address} does not contain ${{generation}}")]
    GenerationMissing { address: String },
    #[error(
        "`{field}` of {address} changes with the generation ({through}), but {address} is stateful"
    )]
    IdentityChangesWithGeneration {
        address: String,
        field: String,
        through: String,
    },
    #[error("zone `{zone}` is not declared in [zones]")]
    UndeclaredZone { zone: String },
    #[error("{what} is {value}, outside its range {range}")]
    OutOfRange {
        what: String,
        value: String,
        range: String,
    },
    #[error("{vm} has two disks at lun {lun}")]
    SharedLun { vm: String, lun: i64 },
    #[error("{address} is stateful: deleting it needs `allow_destroy = true`")]
    DestroyNeedsOptIn { address: String },
    #[error("`allow_destroy` does nothing on {address}: {kind} is not a stateful kind")]
    UselessAllowDestroy { address: String, kind: String },
}

/// One problem in a spec, with where it is and what to do about it.
#[derive(Debug, Clone)]
pub struct SpecError {
    problem: Problem,
    place: Option<Place>,
    label: Option<String>,
    help: Option<String>,
    severity: Severity,
    related: Vec<SpecError>,
    /// What miette shows instead of the file when a line around the problem is too long.
    excerpt: Option<Arc<Excerpt>>,
}

impl SpecError {
    pub(crate) fn new(problem: Problem, place: Option<Place>) -> Self {
        let excerpt = place
            .as_ref()
            .and_then(|place| Excerpt::around(&place.file, &place.span))
            .map(Arc::new);
        Self {
            problem,
            place,
            excerpt,
            label: None,
            help: None,
            severity: Severity::Error,
            related: Vec::new(),
        }
    }

    pub(crate) fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    pub(crate) fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub(crate) fn maybe_help(mut self, help: Option<String>) -> Self {
        self.help = help;
        self
    }

    /// Adds a note pointing at another place, such as the first definition of a duplicate.
    pub(crate) fn note(mut self, problem: Problem, place: Place) -> Self {
        let mut note = SpecError::new(problem, Some(place));
        note.severity = Severity::Advice;
        self.related.push(note);
        self
    }

    /// Shows every secret in the message, label and help as redacted.
    pub(crate) fn mask(&mut self, secrets: &ferry_core::secret::Secrets) {
        if secrets.is_empty() {
            return;
        }
        let message = self.problem.to_string();
        let masked = secrets.mask(&message);
        if masked != message {
            self.problem = Problem::Note { message: masked };
        }
        for text in [&mut self.label, &mut self.help].into_iter().flatten() {
            *text = secrets.mask(text);
        }
        for note in &mut self.related {
            note.mask(secrets);
        }
    }

    /// What is wrong.
    pub fn problem(&self) -> &Problem {
        &self.problem
    }

    /// `file:line:column` of the offending text, when the problem has a place.
    pub fn location(&self) -> Option<String> {
        self.place
            .as_ref()
            .map(|place| place.file.position(place.span.start))
    }

    /// What to do about it.
    pub fn help_text(&self) -> Option<&str> {
        self.help.as_deref()
    }

    /// The file and the byte offset, for sorting problems in reading order; problems of the
    /// spec as a whole come first.
    pub(crate) fn sort_key(&self) -> (usize, usize, usize) {
        self.place.as_ref().map_or((0, 0, 0), |place| {
            (place.file.index + 1, place.span.start, place.span.end)
        })
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.problem, f)
    }
}

impl std::error::Error for SpecError {}

impl Diagnostic for SpecError {
    fn severity(&self) -> Option<Severity> {
        Some(self.severity)
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|help| Box::new(help) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        if let Some(excerpt) = &self.excerpt {
            return Some(&**excerpt as &dyn SourceCode);
        }
        self.place
            .as_ref()
            .map(|place| &*place.file.named as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let place = self.place.as_ref()?;
        let span = match &self.excerpt {
            Some(excerpt) => excerpt.span.clone(),
            None => place.span.start..place.span.end.max(place.span.start),
        };
        let label = LabeledSpan::new_primary_with_span(self.label.clone(), span);
        Some(Box::new(std::iter::once(label)))
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        if self.related.is_empty() {
            return None;
        }
        Some(Box::new(
            self.related.iter().map(|note| note as &dyn Diagnostic),
        ))
    }
}

/// Every problem found in a spec; loading reports them all at once.
#[derive(Debug, Clone)]
pub struct SpecErrors {
    errors: Vec<SpecError>,
}

impl SpecErrors {
    pub(crate) fn new(errors: Vec<SpecError>) -> Self {
        Self { errors }
    }

    pub fn len(&self) -> usize {
        self.errors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &SpecError> {
        self.errors.iter()
    }

    /// Every diagnostic, rendered at a fixed width so that the text does not depend on the
    /// terminal, then a summary line.
    pub fn render(&self, color: bool) -> String {
        let theme = if color {
            GraphicalTheme::unicode()
        } else {
            GraphicalTheme::unicode_nocolor()
        };
        let handler = GraphicalReportHandler::new_themed(theme)
            .with_width(100)
            .with_links(false);
        let mut out = String::new();
        for error in &self.errors {
            if !out.is_empty() {
                out.push('\n');
            }
            // Writing to a String cannot fail; a rendering bug must not hide the other errors.
            if handler.render_report(&mut out, error).is_err() {
                out.push_str(&format!("{error}\n"));
            }
        }
        out.push_str(&format!("error: {self}\n"));
        out
    }
}

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.errors.len() {
            1 => f.write_str("1 problem in the spec"),
            count => write!(f, "{count} problems in the spec"),
        }
    }
}

impl std::error::Error for SpecErrors {}

impl Diagnostic for SpecErrors {
    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        Some(Box::new(
            self.errors.iter().map(|error| error as &dyn Diagnostic),
        ))
    }
}

impl<'a> IntoIterator for &'a SpecErrors {
    type Item = &'a SpecError;
    type IntoIter = std::slice::Iter<'a, SpecError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.iter()
    }
}
