//! node.json as the agent reads it: parse, derive the subnet and the record rules, and a config
//! that parses must survive its own JSON form unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use molten_contract::NodeConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = NodeConfig::from_json("fuzz", text) else {
        return;
    };
    let _ = mc::records::Rules::from_config(&config);
    let _ = mc::config::Config::new(config.clone());
    let again = NodeConfig::from_json("again", &config.to_json()).expect("own JSON parses");
    assert_eq!(again, config);
});
