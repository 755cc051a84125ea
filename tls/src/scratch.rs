//! Buffers lent by the polling thread for the length of one read or write.

use std::cell::RefCell;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's scratch buffer, at least `len` bytes long. Its contents
/// are whatever the last user left; `f` must not keep anything in it.
pub(crate) fn with<R>(len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            if buf.len() < len {
                buf.resize(len, 0);
            }
            f(&mut buf[..len])
        }
        // Only if a stream were polled from inside another's poll: a buffer of its own.
        Err(_) => f(&mut vec![0; len]),
    })
}
