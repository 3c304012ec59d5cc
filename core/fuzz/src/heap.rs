//! Live heap accounting, for "buffers stay bounded" assertions that see
//! every buffer a session holds without asking core for accessors.
//!
//! Every Rust allocation of a fuzz binary goes through [`Counting`], which
//! keeps the number of live bytes. A target takes a [`HeapBound`] before it
//! builds the session, and after each operation checks that the heap has
//! not grown past a budget derived from the session's configured limits.
//! Allocations in C (libssl) are not seen; rustls's are.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

static LIVE: AtomicIsize = AtomicIsize::new(0);

/// The system allocator, counting live bytes.
#[derive(Debug)]
pub struct Counting;

fn add(bytes: usize) {
    LIVE.fetch_add(bytes as isize, Ordering::Relaxed);
}

fn sub(bytes: usize) {
    LIVE.fetch_sub(bytes as isize, Ordering::Relaxed);
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged and only counts on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged (see the impl).
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            add(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged (see the impl).
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            add(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged (see the impl).
        unsafe { System.dealloc(ptr, layout) };
        sub(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged (see the impl).
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            add(new_size);
            sub(layout.size());
        }
        new
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Bytes currently allocated through the Rust allocator.
pub fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// The heap a session may grow by, measured from where it was created.
#[derive(Debug)]
pub struct HeapBound {
    base: isize,
    budget: usize,
    peak: usize,
}

impl HeapBound {
    /// Starts measuring now; `budget` is what the session (with its TLS
    /// engine and, where there is one, the harness's TLS peer) may hold.
    pub fn new(budget: usize) -> Self {
        HeapBound {
            base: live(),
            budget,
            peak: 0,
        }
    }

    /// Panics if the heap grew past the budget plus `harness` bytes that the
    /// harness itself holds (buffers it keeps on the session's behalf, as a
    /// socket would, and its transcripts).
    pub fn check(&mut self, harness: usize, context: &dyn std::fmt::Debug) {
        let grown = usize::try_from(live() - self.base).unwrap_or(0);
        let session = grown.saturating_sub(harness);
        self.peak = self.peak.max(session);
        assert!(
            session <= self.budget,
            "heap grew by {session} bytes (budget {}) after {context:?}",
            self.budget
        );
    }

    /// The largest growth seen so far.
    pub fn peak(&self) -> usize {
        self.peak
    }
}

/// Whether `PETREL_FUZZ_TRACE` is set: the session harnesses then print
/// each operation and the heap after it, to read a reproducer by.
pub fn tracing() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("PETREL_FUZZ_TRACE").is_some())
}

impl HeapBound {
    /// Growth since the start, for traces.
    pub fn grown(&self) -> isize {
        live() - self.base
    }
}
