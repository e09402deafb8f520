fn main() -> std::process::ExitCode {
    // Before any other thread allocates: a burst's freed memory goes back to the system.
    malloc_tune::keep_heap_small();
    turumba::cli::main()
}
