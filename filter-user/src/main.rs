fn main() -> std::process::ExitCode {
    // Die quietly on a closed pipe (`xdpwall status | head`), like other Unix tools.
    // SAFETY: setting a signal disposition before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    filter_user::cli::run()
}
