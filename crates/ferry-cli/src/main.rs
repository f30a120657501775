//! The `ferry` binary: everything it does lives in the `ferry_cli` library.

/// mimalloc rather than glibc's allocator: a 100,000-resource `ferry plan` makes 23 million
/// small allocations, which cost glibc a third of the command's time (BENCHMARKS.md, "`ferry
/// plan` end to end on the largest specs"). Only the binary chooses: a program that embeds
/// ferry keeps its own allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    ferry_cli::main()
}
