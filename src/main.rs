//! The `smev-adapter` binary: parses the command line and hands over to the library.
//! It must not contain logic of its own; everything lives in `smev_adapter::cli`.

fn main() -> std::process::ExitCode {
    smev_adapter::cli::main()
}
