//! Records when `mc` was built (`MC_BUILD_EPOCH`, seconds): a node whose clock is earlier than
//! that neither requests nor trusts certificates. `SOURCE_DATE_EPOCH` wins for reproducible builds.

use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        });
    println!("cargo:rustc-env=MC_BUILD_EPOCH={epoch}");
}
