//! The device book: names and groups a person gave, and the devices the routers see.

use crate::ca::unix_now;
use crate::error::{HomeError, Kind, Result};
use crate::store::DeviceRow;
use std::collections::BTreeMap;
use trellis_proto::api::{DeviceListing, SeenDevice};
use trellis_proto::NodeName;

use super::{normalise_mac, Home};

impl Home {
    /// Name a device (by MAC) and put it in a group. Checks the input here so the admin
    /// socket and the web page share one set of rules.
    pub fn set_device(&self, mac: &str, name: &str, group: &str) -> Result<u64> {
        let mac = normalise_mac(mac).ok_or_else(|| {
            HomeError::new(
                Kind::BadRequest,
                format!("{mac:?} is not a MAC address like aa:bb:cc:dd:ee:ff"),
            )
        })?;
        let name = name.trim();
        if name.is_empty() || name.len() > 64 {
            return Err(HomeError::new(
                Kind::BadRequest,
                "a device name has 1 to 64 characters",
            ));
        }
        self.put_device(&DeviceRow {
            mac,
            name: name.to_owned(),
            group: group.to_owned(),
        })
    }

    pub fn put_device(&self, device: &DeviceRow) -> Result<u64> {
        let version = self.store.put_device(device, unix_now())?;
        self.publish()?;
        Ok(version)
    }

    /// Device groups and whether each is built in.
    pub fn groups(&self) -> Result<Vec<(String, bool)>> {
        Ok(self.store.groups()?)
    }

    /// What a node last reported about itself (RAM only).
    /// Every device of the book and every device a router sees, once each, with where it is.
    pub fn device_listing(&self) -> Result<Vec<DeviceListing>> {
        let mut out: BTreeMap<String, DeviceListing> = self
            .devices()?
            .into_iter()
            .map(|d| {
                let listing = DeviceListing {
                    mac: d.mac.clone(),
                    name: d.name,
                    group: Some(d.group),
                    router: None,
                    ip: None,
                    signal_dbm: None,
                    port: None,
                };
                (d.mac, listing)
            })
            .collect();
        for (router, seen) in self.devices_by_router()? {
            for d in seen {
                let Some(mac) = normalise_mac(&d.mac) else {
                    continue;
                };
                let entry = out.entry(mac.clone()).or_insert_with(|| DeviceListing {
                    name: d.dhcp_name().unwrap_or(&mac).to_owned(),
                    mac,
                    group: None,
                    router: None,
                    ip: None,
                    signal_dbm: None,
                    port: None,
                });
                entry.router = Some(router.to_string());
                entry.ip = d.ip;
                entry.signal_dbm = d.wifi.and_then(|w| w.signal_dbm);
                entry.port = d.port;
            }
        }
        Ok(out.into_values().collect())
    }

    /// The devices behind each router of the home, each once (see [`crate::placement`]).
    pub fn devices_by_router(&self) -> Result<BTreeMap<NodeName, Vec<SeenDevice>>> {
        let portal = self.store.portal_node()?;
        let members = self.members();
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        Ok(crate::placement::place_devices(
            live.iter()
                .filter(|(n, _)| members.contains(*n))
                .map(|(n, l)| (n, l.telemetry.devices.as_slice())),
            portal.as_ref(),
        ))
    }

    pub fn devices(&self) -> Result<Vec<DeviceRow>> {
        Ok(self.store.devices()?)
    }
}
