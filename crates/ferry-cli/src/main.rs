//! The `ferry` binary: everything it does lives in the `ferry_cli` library.

fn main() -> std::process::ExitCode {
    ferry_cli::main()
}
