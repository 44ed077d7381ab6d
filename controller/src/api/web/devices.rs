//! Devices and groups as the Devices page lists them, and the certificates page.

use super::*;

#[derive(Serialize, Deserialize)]
pub(super) struct DeviceView {
    mac: String,
    name: String,
    group: String,
}

/// The device book and what the routers see (`group` null: not in the book yet), so the
/// page can offer the devices people have rather than ask for a MAC.
pub(super) async fn devices(
    State(web): State<Arc<Web>>,
    _: Admin,
) -> WebResult<Json<Vec<trellis_proto::api::DeviceListing>>> {
    Ok(Json(web.home.device_listing()?))
}

pub(super) async fn set_device(
    State(web): State<Arc<Web>>,
    _: Admin,
    body: Result<Json<DeviceView>, JsonRejection>,
) -> WebResult<Json<serde_json::Value>> {
    let d = json_body(body)?;
    let version = web.home.set_device(&d.mac, &d.name, &d.group)?;
    Ok(Json(serde_json::json!({ "config_version": version })))
}

#[derive(Serialize)]
pub(super) struct GroupView {
    name: String,
    builtin: bool,
}

pub(super) async fn groups(
    State(web): State<Arc<Web>>,
    _: Admin,
) -> WebResult<Json<Vec<GroupView>>> {
    Ok(Json(
        web.home
            .groups()?
            .into_iter()
            .map(|(name, builtin)| GroupView { name, builtin })
            .collect(),
    ))
}

#[derive(Serialize)]
pub(super) struct CertificatesView {
    home_id: String,
    ca_not_after: u64,
    ca_expires_in_s: i64,
    /// SHA-256 of the CA certificate (DER), to compare with `trellis ca-backup`.
    ca_fingerprint: String,
    leaf_ttl_s: u64,
    routers: Vec<RouterView>,
}

pub(super) fn fingerprint(pem: &str) -> String {
    trellis_proto::tls::certs_from_pem(pem, "the home CA")
        .ok()
        .and_then(|c| c.into_iter().next())
        .map(|der| {
            let d = ring::digest::digest(&ring::digest::SHA256, der.as_ref());
            d.as_ref()
                .iter()
                .map(|b| format!("{b:02X}"))
                .collect::<Vec<_>>()
                .join(":")
        })
        .unwrap_or_default()
}

pub(super) async fn certificates(
    State(web): State<Arc<Web>>,
    _: Admin,
) -> WebResult<Json<CertificatesView>> {
    let ca = web.home.ca();
    Ok(Json(CertificatesView {
        home_id: web.home.home_id().to_string(),
        ca_not_after: ca.not_after(),
        ca_expires_in_s: ca.not_after() as i64 - unix_now() as i64,
        ca_fingerprint: fingerprint(ca.cert_pem()),
        leaf_ttl_s: web.home.settings().leaf_ttl.as_secs(),
        routers: router_views(&web)?,
    }))
}
