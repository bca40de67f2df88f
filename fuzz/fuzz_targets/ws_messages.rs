//! The node's WebSocket messages as the watcher reads them: never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nanosession::rpc::ConfirmationNotification;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Some(note) = ConfirmationNotification::parse(text) {
        if let Ok(block) = note.contents.to_state_block() {
            let _ = block.hash();
        }
    }
});
