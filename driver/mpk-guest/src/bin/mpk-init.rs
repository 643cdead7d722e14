//! `mpk-init`: PID 1 of the guest's initrd. Maps every `mpk.model=` of the
//! measured command line through dm-verity (over dm-crypt for `:crypt`
//! models, keys from `/run/mpk/keys`, optionally delivered by
//! `mpk.keyagent=`), mounts it read-only, then execs `mpk.next=` (default
//! `/sbin/init`). Any failure: a message on the console and power-off (fail
//! closed).

use std::os::unix::process::CommandExt;

fn fatal(msg: &str) -> ! {
    eprintln!("mpk-init: FATAL: {msg}");
    eprintln!("mpk-init: powering off (fail closed)");
    let e = mpk_guest::sys::power_off();
    eprintln!("mpk-init: power-off failed: {e}");
    std::process::abort()
}

fn main() {
    std::panic::set_hook(Box::new(|info| fatal(&format!("panic: {info}"))));
    match mpk_guest::init::run() {
        Ok(next) => {
            mpk_guest::init::say(&format!("handing over to {next}"));
            let e = std::process::Command::new(&next).exec();
            fatal(&format!("cannot exec {next}: {e}"));
        }
        Err(e) => fatal(&e.to_string()),
    }
}
