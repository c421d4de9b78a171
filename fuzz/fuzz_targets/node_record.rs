//! A value under /molten/nodes/<key>: the first line is the key, the rest the value. Checking
//! never panics, a reason is bounded, and a valid record renders in `mc status`'s table.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mc::records::{check_record, Checked, Rules};

fuzz_target!(|data: &[u8]| {
    let (key, value) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (
            String::from_utf8_lossy(&data[..i]).into_owned(),
            &data[i + 1..],
        ),
        None => ("node-0".to_string(), data),
    };
    let rules = Rules {
        flannel: Some(molten_contract::FlannelSettings::new(
            "10.1.0.0/16".parse().unwrap(),
            24,
        )),
        docker_port: Some(2376),
        docker_ca_fingerprint: Some("ab".repeat(32)),
    };
    for rules in [rules, Rules::default()] {
        match check_record(&key, value, &rules) {
            Checked::Invalid(reason) => assert!(
                reason.len() <= mc::text::MAX_ERROR_BYTES + 64,
                "{}",
                reason.len()
            ),
            Checked::Valid(record) => {
                let now = time::OffsetDateTime::now_utc();
                let options = mc::status::StatusOptions::default();
                let view = mc::status::view(&key, Some(&record), None, None, now, &options);
                let table = mc::status::table(&[view]);
                assert!(!table.contains('\x1b'));
            }
            Checked::Newer { .. } => {}
        }
    }
});
