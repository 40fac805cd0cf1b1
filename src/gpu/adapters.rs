//! Adapter discovery: what wgpu can see, in the order `neurofit devices` prints (hardware
//! before software, Vulkan/Metal/DX12 before GL), and how much device-local memory each has.
//!
//! Only the primary backends (Vulkan, Metal, DX12) are probed unless `WGPU_BACKEND` asks for
//! others: probing OpenGL/EGL makes Mesa print `XDG_RUNTIME_DIR is invalid or not set` on
//! stderr, and GL adapters have no `SHADER_F64` anyway.

/// What `neurofit devices` prints about one adapter.
#[derive(Debug, Clone)]
pub struct AdapterSummary {
    /// Index used by `gpu:N`.
    pub index: usize,
    /// Adapter name as the driver reports it.
    pub name: String,
    /// Graphics API backend.
    pub backend: wgpu::Backend,
    /// Discrete, integrated, virtual, CPU (software) or other.
    pub device_type: wgpu::DeviceType,
    /// Driver name and version.
    pub driver: String,
    /// Whether WGSL f64 is available (`SHADER_F64`).
    pub shader_f64: bool,
    /// Whether timestamp queries are available.
    pub timestamp_query: bool,
    /// A software rasteriser (llvmpipe/lavapipe, SwiftShader, WARP): never picked by `auto`.
    pub is_software: bool,
    /// Whether f64 runs at half the f32 rate or better: data-centre compute parts (NVIDIA
    /// P100/V100/A100/A30/H100/H200/B200, AMD Instinct, Intel Data Center GPU Max) and software
    /// adapters (SIMD lanes of half the width). Decided by name, as no API reports it; these
    /// factor the per-unit systems in f64, all others in f32 with f64 refinement
    /// (`NEUROFIT_GPU_SOLVE` overrides).
    pub full_rate_f64: bool,
    /// `max_storage_buffer_binding_size`.
    pub max_binding: u64,
    /// `max_buffer_size`.
    pub max_buffer: u64,
    /// Device-local memory the platform reports: the Vulkan `VK_EXT_memory_budget` budget when
    /// the driver has it, else the largest `DEVICE_LOCAL` heap; `None` where the platform says
    /// nothing (Metal, DX12, GL).
    pub device_memory: Option<u64>,
}

fn is_software(info: &wgpu::AdapterInfo) -> bool {
    let n = info.name.to_lowercase();
    info.device_type == wgpu::DeviceType::Cpu
        || [
            "llvmpipe",
            "lavapipe",
            "swiftshader",
            "basic render",
            "warp",
            "softpipe",
        ]
        .iter()
        .any(|s| n.contains(s))
}

/// Names (lower case) of adapters whose f64 rate is at least half their f32 rate.
const FULL_RATE_F64: [&str; 16] = [
    "p100",
    "v100",
    "a100",
    "a800",
    "a30",
    "h100",
    "h200",
    "h800",
    "gh200",
    "b100",
    "b200",
    "titan v",
    "instinct",
    "radeon vii",
    "radeon pro vii",
    "data center gpu max",
];

fn full_rate_f64(info: &wgpu::AdapterInfo, shader_f64: bool) -> bool {
    let n = info.name.to_lowercase();
    shader_f64 && (is_software(info) || FULL_RATE_F64.iter().any(|s| n.contains(s)))
}

/// Gives the process a private, empty `XDG_RUNTIME_DIR` when it has none (or an invalid one).
///
/// Mesa's Vulkan drivers (lavapipe among them) print `error: XDG_RUNTIME_DIR is invalid or not
/// set in the environment.` on stderr whenever an instance is created without it, although
/// nothing is wrong: compute needs no display. Call this at start-up, before other threads
/// exist (setting an environment variable races with concurrent reads); the `neurofit` CLI and
/// the test harness do.
pub fn quiet_runtime_dir() {
    let valid = std::env::var_os("XDG_RUNTIME_DIR")
        .map(std::path::PathBuf::from)
        .is_some_and(|p| p.is_dir());
    if valid {
        return;
    }
    let dir = std::env::temp_dir().join(format!("neurofit-runtime-{}", std::process::id()));
    let made = std::fs::create_dir_all(&dir).is_ok();
    #[cfg(unix)]
    if made {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
    }
    if made {
        std::env::set_var("XDG_RUNTIME_DIR", dir);
    }
}

/// The wgpu instance: primary backends unless `WGPU_BACKEND` says otherwise.
pub(super) fn instance() -> wgpu::Instance {
    // one per process: the device resolution's probe and the opening of the adapter share it
    // (creating a Vulkan instance loads the drivers, ~0.1–0.6 s on the H100 machine)
    static INSTANCE: std::sync::OnceLock<wgpu::Instance> = std::sync::OnceLock::new();
    INSTANCE
        .get_or_init(|| {
            let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
            if std::env::var_os("WGPU_BACKEND").is_none() {
                desc.backends = wgpu::Backends::PRIMARY;
            }
            wgpu::Instance::new(desc)
        })
        .clone()
}

/// Every adapter of `inst`, sorted: hardware first, then non-GL, then with `SHADER_F64`.
pub(super) fn sorted_adapters(inst: &wgpu::Instance) -> Vec<wgpu::Adapter> {
    let mut adapters = pollster::block_on(inst.enumerate_adapters(wgpu::Backends::all()));
    adapters.sort_by_key(|a| {
        let info = a.get_info();
        (
            is_software(&info),
            info.backend == wgpu::Backend::Gl,
            !a.features().contains(wgpu::Features::SHADER_F64),
        )
    });
    adapters
}

/// The summary of adapter `a` listed at `index`.
pub(super) fn summary(index: usize, a: &wgpu::Adapter) -> AdapterSummary {
    let info = a.get_info();
    let limits = a.limits();
    let features = a.features();
    AdapterSummary {
        index,
        name: info.name.clone(),
        backend: info.backend,
        device_type: info.device_type,
        driver: format!("{} {}", info.driver, info.driver_info)
            .trim()
            .to_string(),
        shader_f64: features.contains(wgpu::Features::SHADER_F64),
        timestamp_query: features.contains(wgpu::Features::TIMESTAMP_QUERY),
        is_software: is_software(&info),
        full_rate_f64: full_rate_f64(&info, features.contains(wgpu::Features::SHADER_F64)),
        max_binding: limits.max_storage_buffer_binding_size,
        max_buffer: limits.max_buffer_size,
        device_memory: device_memory(a),
    }
}

/// Every adapter wgpu finds: hardware before software, Vulkan/Metal/DX12 before GL.
pub fn enumerate() -> Vec<AdapterSummary> {
    let start = std::time::Instant::now();
    let inst = instance();
    let out = sorted_adapters(&inst)
        .iter()
        .enumerate()
        .map(|(i, a)| summary(i, a))
        .collect();
    super::trace::span("probe", "adapters enumerated", start, 0);
    out
}

#[cfg(any(
    target_os = "linux",
    target_os = "windows",
    target_os = "android",
    target_os = "freebsd"
))]
fn device_memory(a: &wgpu::Adapter) -> Option<u64> {
    if a.get_info().backend != wgpu::Backend::Vulkan {
        return None;
    }
    // SAFETY: the HAL adapter is only read (physical-device queries); nothing is created or
    // destroyed through it, and the guard is dropped before this function returns.
    let hal = unsafe { a.as_hal::<wgpu::hal::api::Vulkan>() }?;
    let phd = hal.raw_physical_device();
    let instance = hal.shared_instance().raw_instance();
    // SAFETY: `phd` is a valid physical device of `instance` for the adapter's lifetime.
    let props = unsafe { instance.get_physical_device_memory_properties(phd) };
    let heaps = &props.memory_heaps[..props.memory_heap_count as usize];
    let local: Vec<usize> = (0..heaps.len())
        .filter(|&i| {
            heaps[i]
                .flags
                .contains(ash::vk::MemoryHeapFlags::DEVICE_LOCAL)
        })
        .collect();
    let largest = local.iter().map(|&i| heaps[i].size).max()?;
    // SAFETY: as above; extension enumeration only reads.
    let has_budget = unsafe { instance.enumerate_device_extension_properties(phd) }
        .ok()
        .is_some_and(|exts| {
            exts.iter().any(|e| {
                e.extension_name_as_c_str()
                    .is_ok_and(|n| n == ash::ext::memory_budget::NAME)
            })
        });
    // SAFETY: as above.
    let api = unsafe { instance.get_physical_device_properties(phd) }.api_version;
    if has_budget && ash::vk::api_version_minor(api) >= 1 {
        let mut budget = ash::vk::PhysicalDeviceMemoryBudgetPropertiesEXT::default();
        let mut props2 = ash::vk::PhysicalDeviceMemoryProperties2::default().push_next(&mut budget);
        // SAFETY: the extension is supported by the device and the chain is well formed.
        unsafe { instance.get_physical_device_memory_properties2(phd, &mut props2) };
        let best = local
            .iter()
            .map(|&i| budget.heap_budget[i])
            .max()
            .unwrap_or(0);
        if best > 0 {
            return Some(best);
        }
    }
    Some(largest)
}

#[cfg(not(any(
    target_os = "linux",
    target_os = "windows",
    target_os = "android",
    target_os = "freebsd"
)))]
fn device_memory(_a: &wgpu::Adapter) -> Option<u64> {
    None
}
