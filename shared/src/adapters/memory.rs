//! The process's memory: what the allocator holds freed is given back to the system.
//!
//! glibc's malloc keeps what a thread freed in that thread's arena, and returns pages only
//! from the top of a heap; so after a data-prep run its keys' pages stay resident, and a
//! backlog's runs, each landing in other arenas, grew `enfeed serve` by several MB a run
//! (docs/performance.md, "Data-prep under a backlog"). [`give_back_freed`] asks for the free
//! pages of every arena back (`malloc_trim(0)`); live memory is untouched.

/// Gives the pages the allocator holds free back to the system, and returns whether it gave
/// any. glibc locks each arena while it walks it, so this belongs between bursts of work (a
/// data-prep run), not on a request's path. Elsewhere (musl, other systems) it does nothing:
/// those allocators give memory back themselves or have no such call.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[expect(unsafe_code, reason = "malloc_trim is a C function")]
pub fn give_back_freed() -> bool {
    // SAFETY: malloc_trim takes no pointers and works on glibc's own free lists, under the
    // locks every allocation takes.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Gives the pages the allocator holds free back to the system: nothing to do here.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn give_back_freed() -> bool {
    false
}
