//! The process's allocator, and giving memory back when the server asks.

use std::cell::Cell;

/// mimalloc: the server allocates many short-lived buffers per request; glibc
/// malloc took ~15% of server CPU under write load (docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Sets the server's memory policy up, before its runtime starts:
/// transparent huge pages off. mimalloc asks for them on its arenas
/// (`madvise`), and the kernel's khugepaged then fills every 2 MiB range
/// with a page in use back up to 2 MiB: what mimalloc handed back after many
/// event streams ended returned within seconds, and an idle server used
/// ~15 MB more (docs/BENCHMARKS.md). Only for `serve`: the flag is inherited
/// by child processes (an agent's reload command, say).
pub fn serve_memory_policy() {
    // A kernel without the flag keeps huge pages: more memory, same behaviour.
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
}

thread_local! {
    /// The releases requested when this thread last released.
    static RELEASED: Cell<u64> = const { Cell::new(0) };
}

/// Runs on a runtime worker just before it parks: when the server requested
/// a release since this thread's last (`fleetreg_server::memory`, after many
/// event streams ended), collects the thread's heap and hands the free
/// memory of mimalloc's arenas back to the OS. mimalloc does neither by
/// itself until the thread allocates again, so an idle server would keep it.
/// A thread can only collect its own heap, hence on each worker (blocking
/// pool threads never park here; they hold no stream's buffers).
pub fn release_when_idle() {
    let requested = fleetreg_server::memory::releases_requested();
    if RELEASED.get() != requested {
        RELEASED.set(requested);
        // SAFETY: mi_collect takes no pointer and has no precondition; it
        // works on the calling thread's heap and mimalloc's shared arenas.
        unsafe { libmimalloc_sys::mi_collect(true) };
    }
}
