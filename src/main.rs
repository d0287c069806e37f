//! The `wxauth` executable; everything lives in the library.

fn main() -> std::process::ExitCode {
    wxauth::cli::main()
}
