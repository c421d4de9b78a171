//! TEST FIXTURE: a stand-in for flanneld on the molten lab's Debian nodes. See
//! `molten_testkit::lab::flannel_standin` for what it does and does not do.

fn main() -> std::process::ExitCode {
    let args = match molten_testkit::lab::flannel_standin::args_from_env() {
        Ok(args) => args,
        Err(err) => {
            eprintln!("flanneld-standin: {err:#}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("flanneld-standin: cannot start the runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(molten_testkit::lab::flannel_standin::run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("flanneld-standin: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
