//! Build script: only does something with the `spdk` feature, where it generates bindings to
//! the SPDK headers under `$SPDK_DIR` with bindgen and links SPDK's libraries.
//!
//! `NVME_SPDK_STUB_BINDINGS=1` uses the hand-written declarations in `spdk-stub/bindings.rs`
//! instead, so `cargo check --features spdk` can type-check the backend on machines without
//! SPDK (the result cannot link or run).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "spdk")]
    spdk::generate();
}

#[cfg(feature = "spdk")]
mod spdk {
    use std::env;
    use std::path::PathBuf;

    pub fn generate() {
        println!("cargo:rerun-if-env-changed=SPDK_DIR");
        println!("cargo:rerun-if-env-changed=NVME_SPDK_STUB_BINDINGS");
        let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"))
            .join("spdk_bindings.rs");
        if env::var_os("NVME_SPDK_STUB_BINDINGS").is_some() {
            println!("cargo:rerun-if-changed=spdk-stub/bindings.rs");
            std::fs::copy("spdk-stub/bindings.rs", &out).expect("copy stub bindings");
            println!(
                "cargo:warning=nvme: spdk backend built against STUB bindings; it cannot link"
            );
            return;
        }
        let Some(dir) = env::var_os("SPDK_DIR").map(PathBuf::from) else {
            eprintln!(
                "\nerror: the `spdk` feature of `nvme` needs SPDK installed.\n\
                 Set SPDK_DIR to an SPDK source tree built with `./configure && make` (headers in\n\
                 $SPDK_DIR/include, libraries in $SPDK_DIR/build/lib and\n\
                 $SPDK_DIR/dpdk/build/lib), or build without `--features spdk`.\n\
                 (To type-check only: NVME_SPDK_STUB_BINDINGS=1.)\n"
            );
            std::process::exit(1);
        };
        let include = dir.join("include");
        if !include.join("spdk/nvme.h").exists() {
            eprintln!(
                "\nerror: SPDK_DIR={} has no include/spdk/nvme.h; point it at a built SPDK tree.\n",
                dir.display()
            );
            std::process::exit(1);
        }
        println!("cargo:rerun-if-changed={}", include.display());
        let bindings = bindgen::Builder::default()
            .header_contents(
                "nvme_spdk.h",
                "#include <spdk/env.h>\n#include <spdk/nvme.h>\n",
            )
            .clang_arg(format!("-I{}", include.display()))
            .allowlist_function("spdk_env_opts_init")
            .allowlist_function("spdk_env_init")
            .allowlist_function("spdk_dma_zmalloc")
            .allowlist_function("spdk_dma_free")
            .allowlist_function("spdk_nvme_trid_populate_transport")
            .allowlist_function("spdk_nvme_transport_id_parse")
            .allowlist_function("spdk_nvme_probe")
            .allowlist_function("spdk_nvme_detach")
            .allowlist_function("spdk_nvme_ctrlr_get_ns")
            .allowlist_function("spdk_nvme_ctrlr_alloc_io_qpair")
            .allowlist_function("spdk_nvme_ctrlr_free_io_qpair")
            .allowlist_function("spdk_nvme_ns_get_sector_size")
            .allowlist_function("spdk_nvme_ns_get_size")
            .allowlist_function("spdk_nvme_ns_is_active")
            .allowlist_function("spdk_nvme_ns_cmd_read")
            .allowlist_function("spdk_nvme_ns_cmd_write")
            .allowlist_function("spdk_nvme_ns_cmd_flush")
            .allowlist_function("spdk_nvme_qpair_process_completions")
            .derive_default(true)
            .generate()
            .expect("bindgen failed on the SPDK headers");
        bindings.write_to_file(&out).expect("write SPDK bindings");
        for lib in [
            "build/lib",
            "dpdk/build/lib",
            "isa-l/.libs",
            "isa-l-crypto/.libs",
        ] {
            println!("cargo:rustc-link-search=native={}", dir.join(lib).display());
        }
        // SPDK's static libraries depend on each other in this order; DPDK's env layer last.
        for lib in [
            "spdk_nvme",
            "spdk_sock",
            "spdk_sock_posix",
            "spdk_keyring",
            "spdk_trace",
            "spdk_rpc",
            "spdk_jsonrpc",
            "spdk_json",
            "spdk_dma",
            "spdk_vmd",
            "spdk_env_dpdk",
            "spdk_util",
            "spdk_log",
            "rte_eal",
            "rte_mempool",
            "rte_ring",
            "rte_mbuf",
            "rte_bus_pci",
            "rte_pci",
            "rte_kvargs",
            "rte_telemetry",
            "rte_log",
        ] {
            println!("cargo:rustc-link-lib={lib}");
        }
        for lib in ["numa", "uuid", "ssl", "crypto", "pthread", "dl", "rt"] {
            println!("cargo:rustc-link-lib={lib}");
        }
    }
}
