//! Giving the memory of an unloaded model back to the system.
//!
//! Rust allocations go through mimalloc (the binary's global allocator), which returns freed
//! pages by itself. ONNX Runtime is C++ and allocates with the C library's `malloc`; glibc
//! keeps freed heap memory for reuse (and, after large frees, raises its mmap threshold so that
//! later large blocks come from the heap too), so a model's hundreds of megabytes would stay
//! resident after unloading (measured: a 14 MB model's worth came and went between unloads).
//! [`configure`] pins glibc's mmap threshold at 1 MiB, so every large block (weights, arenas)
//! is its own mapping, unmapped when freed; [`release`] trims what small blocks leave free.

/// glibc: blocks from this size up get a mapping of their own.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 1 << 20;

/// Sets the C allocator up to return large freed blocks at once; call once, early in `main`.
#[allow(unsafe_code)]
pub fn configure() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` takes plain integers and only changes glibc's tuning parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

/// Returns the C heap's free memory to the system (glibc on Linux; a no-op elsewhere).
#[allow(unsafe_code)]
pub fn release() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` takes no pointers and works under glibc's own arena locks; it is
    // safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
