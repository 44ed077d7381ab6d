//! The CPU an ELF file is built for, from its header, and the CPU an OpenWrt arch means.
use anyhow::{bail, Result};

/// The three header fields that decide whether a router can run a binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Machine {
    /// EI_CLASS: 1 = 32-bit, 2 = 64-bit.
    pub class: u8,
    /// EI_DATA: 1 = little-endian, 2 = big-endian.
    pub endian: u8,
    /// e_machine (EM_AARCH64 = 183, EM_ARM = 40, EM_X86_64 = 62, EM_MIPS = 8).
    pub machine: u16,
}

impl std::fmt::Display for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self.machine {
            183 => "aarch64",
            40 => "arm",
            62 => "x86_64",
            8 => "mips",
            _ => "other",
        };
        write!(
            f,
            "{name} (e_machine {}), {}-bit, {}-endian",
            self.machine,
            if self.class == 2 { 64 } else { 32 },
            if self.endian == 2 { "big" } else { "little" }
        )
    }
}

/// `None` when `bytes` is not an ELF file at all.
pub fn machine(bytes: &[u8]) -> Result<Option<Machine>> {
    if !bytes.starts_with(b"\x7fELF") {
        return Ok(None);
    }
    if bytes.len() < 20 {
        bail!("truncated ELF header ({} bytes)", bytes.len());
    }
    let (class, endian) = (bytes[4], bytes[5]);
    if !(1..=2).contains(&class) || !(1..=2).contains(&endian) {
        bail!("ELF header with class {class} / data {endian} is not valid");
    }
    let raw = [bytes[18], bytes[19]];
    let machine = if endian == 1 {
        u16::from_le_bytes(raw)
    } else {
        u16::from_be_bytes(raw)
    };
    Ok(Some(Machine {
        class,
        endian,
        machine,
    }))
}

/// What a binary in a package of this OpenWrt arch must be.
pub fn expected(openwrt_arch: &str) -> Result<Machine> {
    let (class, endian, machine) = if openwrt_arch.starts_with("aarch64") {
        (2, 1, 183)
    } else if openwrt_arch.starts_with("arm_") {
        (1, 1, 40)
    } else if openwrt_arch == "x86_64" {
        (2, 1, 62)
    } else if openwrt_arch.starts_with("mipsel_") {
        (1, 1, 8)
    } else if openwrt_arch.starts_with("mips_") {
        (1, 2, 8)
    } else {
        bail!("no known CPU for OpenWrt arch {openwrt_arch:?}")
    };
    Ok(Machine {
        class,
        endian,
        machine,
    })
}

/// A 64-byte ELF header for tests, so package checks can be exercised without a cross build.
#[cfg(test)]
pub fn fake_header(m: Machine) -> Vec<u8> {
    let mut h = vec![0u8; 64];
    h[..4].copy_from_slice(b"\x7fELF");
    h[4] = m.class;
    h[5] = m.endian;
    h[6] = 1;
    let e = if m.endian == 1 {
        m.machine.to_le_bytes()
    } else {
        m.machine.to_be_bytes()
    };
    h[18..20].copy_from_slice(&e);
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_arch_of_the_table_maps_to_a_cpu() {
        for t in crate::cross::targets().unwrap() {
            let m = expected(&t.openwrt_arch).unwrap();
            assert_eq!(machine(&fake_header(m)).unwrap(), Some(m));
        }
        assert!(expected("loongarch64").is_err());
    }

    #[test]
    fn mips_endianness_is_told_apart() {
        let be = expected("mips_24kc").unwrap();
        let le = expected("mipsel_24kc").unwrap();
        assert_ne!(be, le);
        assert_eq!(machine(&fake_header(be)).unwrap().unwrap().endian, 2);
        assert_eq!(machine(b"#!/bin/sh\n").unwrap(), None);
        assert!(machine(b"\x7fELF\x01").is_err());
    }
}
