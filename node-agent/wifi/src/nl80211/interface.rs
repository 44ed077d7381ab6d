//! Radios and interfaces (`iw phy`, `iw dev`) and the mesh-point interface: creating and
//! deleting it, joining and leaving an open mesh on it, and its mesh parameters
//! (`iw dev X get/set mesh_param`).

use futures_util::TryStreamExt;
use serde::Serialize;
use wl_nl80211::{Nl80211Attr, Nl80211InterfaceType, Nl80211NewInterface};

use super::{cmd, ifindex_attr, with_timeout, Error, Nl80211, MAX_DUMP_ENTRIES};
use crate::raw_nla::{self, MeshParam, NlaWriter};
use trellis_proto::policy::MacAddr;

/// A radio (`iw phy`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Radio {
    pub wiphy: u32,
    pub name: String,
}

/// A wireless interface (`iw dev`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WifiInterface {
    pub ifindex: u32,
    pub name: String,
    pub wiphy: u32,
    pub iftype: String,
    pub mac: Option<MacAddr>,
    pub freq_mhz: Option<u32>,
}

impl Nl80211 {
    /// `iw phy`: the radios.
    pub async fn radios(&self) -> Result<Vec<Radio>, Error> {
        let cmd = "GET_WIPHY";
        let mut stream = self.handle.clone().wireless_physic().get().execute().await;
        let mut out: Vec<Radio> = Vec::new();
        while let Some(msg) = with_timeout(cmd, stream.try_next()).await? {
            let mut wiphy = None;
            let mut name = None;
            for a in &msg.payload.attributes {
                match a {
                    Nl80211Attr::Wiphy(w) => wiphy = Some(*w),
                    Nl80211Attr::WiphyName(n) => name = Some(n.clone()),
                    _ => {}
                }
            }
            // A split dump sends several messages per radio; keep one entry each.
            if let (Some(wiphy), Some(name)) = (wiphy, name) {
                if !out.iter().any(|r| r.wiphy == wiphy) && out.len() < MAX_DUMP_ENTRIES {
                    out.push(Radio { wiphy, name });
                }
            }
        }
        out.sort_by_key(|r| r.wiphy);
        Ok(out)
    }

    /// `iw dev`: the wireless interfaces.
    pub async fn interfaces(&self) -> Result<Vec<WifiInterface>, Error> {
        let cmd = "GET_INTERFACE";
        let mut stream = self.handle.clone().interface().get(vec![]).execute().await;
        let mut out = Vec::new();
        while let Some(msg) = with_timeout(cmd, stream.try_next()).await? {
            if let Some(iface) = interface_from_attrs(&msg.payload.attributes) {
                if out.len() < MAX_DUMP_ENTRIES {
                    out.push(iface);
                }
            }
        }
        out.sort_by_key(|i: &WifiInterface| i.ifindex);
        Ok(out)
    }

    pub async fn interface_by_name(&self, name: &str) -> Result<WifiInterface, Error> {
        self.interfaces()
            .await?
            .into_iter()
            .find(|i| i.name == name)
            .ok_or_else(|| Error::NoSuchInterface(name.to_string()))
    }

    pub async fn radio_by_name(&self, name: &str) -> Result<Radio, Error> {
        self.radios()
            .await?
            .into_iter()
            .find(|r| r.name == name)
            .ok_or_else(|| Error::NoSuchRadio(name.to_string()))
    }

    /// `iw phy PHY interface add NAME type mp`: creates the mesh-point interface. An interface
    /// of that name left from an earlier run is deleted first: a fresh one carries no state from
    /// before (a killed wpa_supplicant leaves its link in DORMANT mode, which keeps a bridge
    /// port disabled).
    pub async fn ensure_mesh_interface(
        &self,
        wiphy: u32,
        name: &str,
    ) -> Result<WifiInterface, Error> {
        if let Some(existing) = self
            .interfaces()
            .await?
            .into_iter()
            .find(|i| i.name == name)
        {
            self.delete_interface(existing.ifindex).await?;
        }
        let cmd = "NEW_INTERFACE";
        let attrs =
            Nl80211NewInterface::new(wiphy, Nl80211InterfaceType::MeshPoint, name.to_string())
                .build();
        let mut stream = self.handle.clone().interface().add(attrs).execute().await;
        while let Some(msg) = with_timeout(cmd, stream.try_next()).await? {
            if let Some(iface) = interface_from_attrs(&msg.payload.attributes) {
                return Ok(iface);
            }
        }
        self.interface_by_name(name).await
    }

    /// `iw dev X del`.
    pub async fn delete_interface(&self, ifindex: u32) -> Result<(), Error> {
        self.raw(cmd::DEL_INTERFACE, ifindex_attr(ifindex), false)
            .await
            .map(|_| ())
    }

    /// `iw dev X mesh join ID freq F [mesh params]`: joins an OPEN mesh run by the kernel's own
    /// peering. Only for the explicit test setting: an encrypted mesh is joined by
    /// wpa_supplicant (see [`crate::sae`]).
    pub async fn join_open_mesh(
        &self,
        ifindex: u32,
        mesh_id: &str,
        freq_mhz: u32,
        params: &[(MeshParam, u32)],
    ) -> Result<(), Error> {
        let mut w = NlaWriter::new();
        w.u32(raw_nla::ATTR_IFINDEX, ifindex)
            .bytes(raw_nla::ATTR_MESH_ID, mesh_id.as_bytes())
            .u32(raw_nla::ATTR_WIPHY_FREQ, freq_mhz)
            .bytes(raw_nla::ATTR_MESH_SETUP, &raw_nla::encode_mesh_setup_open());
        if !params.is_empty() {
            w.bytes(
                raw_nla::ATTR_MESH_CONFIG,
                &raw_nla::encode_mesh_config(params),
            );
        }
        self.raw(cmd::JOIN_MESH, w.finish(), false)
            .await
            .map(|_| ())
    }

    /// `iw dev X mesh leave`.
    pub async fn leave_mesh(&self, ifindex: u32) -> Result<(), Error> {
        self.raw(cmd::LEAVE_MESH, ifindex_attr(ifindex), false)
            .await
            .map(|_| ())
    }

    /// `iw dev X get mesh_param`: every parameter the kernel reports.
    pub async fn mesh_config(&self, ifindex: u32) -> Result<Vec<(MeshParam, u32)>, Error> {
        let msgs = self
            .raw(cmd::GET_MESH_CONFIG, ifindex_attr(ifindex), false)
            .await?;
        for m in msgs {
            for a in raw_nla::attrs(&m.attrs).flatten() {
                if a.0 == raw_nla::ATTR_MESH_CONFIG {
                    return raw_nla::parse_mesh_config(a.1).map_err(|e| Error::Request {
                        cmd: "GET_MESH_CONFIG",
                        detail: e.to_string(),
                    });
                }
            }
        }
        Ok(Vec::new())
    }

    /// `iw dev X set mesh_param NAME VALUE` for several parameters at once (the mesh must be
    /// joined: the kernel answers ENOLINK before that).
    pub async fn set_mesh_config(
        &self,
        ifindex: u32,
        params: &[(MeshParam, u32)],
    ) -> Result<(), Error> {
        if params.is_empty() {
            return Ok(());
        }
        let mut w = NlaWriter::new();
        w.u32(raw_nla::ATTR_IFINDEX, ifindex).bytes(
            raw_nla::ATTR_MESH_CONFIG,
            &raw_nla::encode_mesh_config(params),
        );
        self.raw(cmd::SET_MESH_CONFIG, w.finish(), false)
            .await
            .map(|_| ())
    }
}

fn interface_from_attrs(attrs: &[Nl80211Attr]) -> Option<WifiInterface> {
    let mut ifindex = None;
    let mut name = None;
    let mut wiphy = None;
    let mut iftype = None;
    let mut mac = None;
    let mut freq = None;
    for a in attrs {
        match a {
            Nl80211Attr::IfIndex(i) => ifindex = Some(*i),
            Nl80211Attr::IfName(n) => name = Some(n.clone()),
            Nl80211Attr::Wiphy(w) => wiphy = Some(*w),
            Nl80211Attr::IfType(t) => iftype = Some(iftype_name(t)),
            Nl80211Attr::Mac(m) => mac = Some(MacAddr(*m)),
            Nl80211Attr::WiphyFreq(f) => freq = Some(*f),
            _ => {}
        }
    }
    Some(WifiInterface {
        ifindex: ifindex?,
        name: name?,
        wiphy: wiphy?,
        iftype: iftype.unwrap_or_else(|| "unknown".into()),
        mac,
        freq_mhz: freq,
    })
}

fn iftype_name(t: &Nl80211InterfaceType) -> String {
    match t {
        Nl80211InterfaceType::MeshPoint => "mesh point".into(),
        Nl80211InterfaceType::Station => "managed".into(),
        Nl80211InterfaceType::Ap => "AP".into(),
        Nl80211InterfaceType::Monitor => "monitor".into(),
        other => format!("{other:?}").to_lowercase(),
    }
}
