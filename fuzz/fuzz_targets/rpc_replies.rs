//! Node RPC replies (`block_info`, `account_info`, `block_confirm`), as the lenient readers take
//! them: never a panic, and a block that converts hashes without one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nanosession::rpc::{AccountInfo, BlockConfirmReply, BlockInfo};

fuzz_target!(|data: &[u8]| {
    if let Ok(info) = serde_json::from_slice::<BlockInfo>(data) {
        let _ = (info.incomplete(), info.subtype());
        let _ = (info.contents.account_address(), info.contents.previous_hash(), info.contents.balance_raw());
        if let Ok(block) = info.contents.to_state_block() {
            let _ = block.hash();
        }
    }
    let _ = serde_json::from_slice::<AccountInfo>(data);
    let _ = serde_json::from_slice::<BlockConfirmReply>(data);
});
