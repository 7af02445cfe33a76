fn main() -> std::process::ExitCode {
    filter_user::cli::run()
}
