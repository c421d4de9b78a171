//! A value under /molten/status/<key> (first line the key): parsing never panics, errors are
//! bounded, and a parsed status renders in `mc status`'s table without terminal escapes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (key, value) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (
            String::from_utf8_lossy(&data[..i]).into_owned(),
            &data[i + 1..],
        ),
        None => ("node-0".to_string(), data),
    };
    let parsed = mc::records::parse_status(&key, value);
    if let Err(reason) = &parsed {
        assert!(
            reason.len() <= mc::text::MAX_ERROR_BYTES + 64,
            "{}",
            reason.len()
        );
    }
    let now = time::OffsetDateTime::now_utc();
    let options = mc::status::StatusOptions::default();
    let view = mc::status::view(&key, None, Some(&parsed), None, now, &options);
    let table = mc::status::table(&[view]);
    assert!(!table.contains('\x1b'));
});
