//! A template writer for a line whose length has an upper bound known before its first byte:
//! the room is reserved once, and each piece is a copy and a pointer bump, with no compare
//! against the room left (`Room` makes one a piece, about 50 an HTTP event, three instructions
//! each with the length kept).

use super::{copy_bytes, small_int};

/// The most bytes `Exact::int` writes (`i64::MIN`).
pub const INT_MAX_LEN: usize = 20;

/// Writes one line into room reserved for its upper bound (see `Exact::new`).
pub struct Exact<'a> {
    buf: &'a mut Vec<u8>,
    /// Where the next byte goes, inside `buf`'s capacity.
    at: *mut u8,
    /// Bytes of the bound not written yet. Test builds only: every `put` checks it, so a
    /// bound that falls short fails a test rather than writing past the allocation.
    #[cfg(any(test, debug_assertions))]
    left: usize,
}

impl<'a> Exact<'a> {
    /// Room after `buf`'s bytes for `bound` more.
    ///
    /// # Safety
    /// Everything put (`put`, `int`) before `finish` is at most `bound` bytes in all: the
    /// writes are not checked against the room in release builds.
    #[inline(always)]
    pub unsafe fn new(buf: &'a mut Vec<u8>, bound: usize) -> Exact<'a> {
        buf.reserve(bound);
        // SAFETY: `len` is within the allocation.
        let at = unsafe { buf.as_mut_ptr().add(buf.len()) };
        Exact {
            buf,
            at,
            #[cfg(any(test, debug_assertions))]
            left: bound,
        }
    }

    #[inline(always)]
    pub fn put(&mut self, s: &[u8]) {
        let n = s.len();
        #[cfg(any(test, debug_assertions))]
        {
            assert!(
                n <= self.left,
                "Exact: bound short by {} bytes",
                n - self.left
            );
            self.left -= n;
        }
        // SAFETY: `new`'s caller promised that all the pieces fit in the `bound` bytes
        // reserved after `len`, so `n` bytes of capacity follow `at`; `s` is not inside
        // `buf`'s spare capacity (nothing borrows it while `Exact` holds `buf`).
        unsafe {
            copy_bytes(s.as_ptr(), self.at, n);
            self.at = self.at.add(n);
        }
    }

    /// An integer as JSON writes it, at most `INT_MAX_LEN` bytes (as `Room::int`).
    #[inline(always)]
    pub fn int(&mut self, v: i64) {
        if (0..100_000).contains(&v) {
            let (text, n) = small_int(v as u32);
            self.put(&text[5 - n..]);
        } else {
            self.put(itoa::Buffer::new().format(v).as_bytes());
        }
    }

    /// Makes what was written part of the buffer.
    #[inline(always)]
    pub fn finish(self) {
        // SAFETY: `at` is inside the same allocation, at or after the old length, and the
        // bytes between were all written by `put`.
        unsafe {
            let len = self.at.offset_from(self.buf.as_ptr()) as usize;
            self.buf.set_len(len);
        }
    }
}
