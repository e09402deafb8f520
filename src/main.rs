fn main() -> std::process::ExitCode {
    turumba::cli::main()
}
