//! The GPU backend's error type: one line each, naming the adapter, the operation, the limit or the size.

/// Everything that can go wrong on the GPU.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum GpuError {
    /// No adapter matches the choice (none at all, none that is hardware, or the index is out of range).
    #[error("no GPU adapter: {reason}")]
    NoAdapter {
        /// Why (which adapters exist).
        reason: String,
    },
    /// The adapter refused to open a device (driver error, unsupported limits).
    #[error("cannot open {adapter}: {reason}")]
    RequestDevice {
        /// The adapter's name.
        adapter: String,
        /// The driver's reason.
        reason: String,
    },
    /// An allocation did not fit in the device's memory.
    #[error("out of GPU memory on {adapter} allocating {what} ({bytes} bytes)")]
    OutOfMemory {
        /// The adapter's name.
        adapter: String,
        /// What was being allocated.
        what: String,
        /// Its size.
        bytes: u64,
    },
    /// A buffer or dispatch exceeds one of the adapter's limits.
    #[error("{what} needs {needed} but {adapter}'s {limit} is {allowed}; use a smaller size or the CPU")]
    Limit {
        /// The adapter's name.
        adapter: String,
        /// What needs it, e.g. `activation relu1_1 (64×2048×2048)`.
        what: String,
        /// The limit's name, e.g. `max_storage_buffer_binding_size`.
        limit: &'static str,
        /// What is needed.
        needed: u64,
        /// What the adapter allows.
        allowed: u64,
    },
    /// The device was lost (driver reset, adapter removed).
    #[error("the GPU device {adapter} was lost: {reason}")]
    DeviceLost {
        /// The adapter's name.
        adapter: String,
        /// The driver's reason.
        reason: String,
    },
    /// A shader did not compile or a pipeline could not be built.
    #[error("GPU kernel {kernel} failed to build on {adapter}: {reason}")]
    Shader {
        /// The kernel.
        kernel: &'static str,
        /// The adapter's name.
        adapter: String,
        /// The compiler's reason.
        reason: String,
    },
    /// Any other error the driver or wgpu reported while running `op`.
    #[error("GPU error on {adapter} during {op}: {reason}")]
    Driver {
        /// The adapter's name.
        adapter: String,
        /// What was running.
        op: &'static str,
        /// The reason.
        reason: String,
    },
    /// A caller passed inconsistent sizes (a programming error of the caller).
    #[error("GPU {op}: {reason}")]
    Shape {
        /// The operation.
        op: &'static str,
        /// What does not fit.
        reason: String,
    },
}

/// The GPU backend's result type.
pub type Result<T, E = GpuError> = std::result::Result<T, E>;
