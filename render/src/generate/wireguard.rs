//! The host-level WireGuard full mesh: every node of every site peers with every other.
//!
//! Git holds one template per node (`deploy/hosts/wireguard/<node>.conf.tmpl`): everything but the
//! peers' public keys, which are collected from the hosts at deploy time. `cyvault deploy
//! wireguard` renders a node's final config from the same code with those keys filled in; the
//! private key is never written by wg-quick's format (wg-quick loads it from the host's key file)
//! and only in the `setconf` format, on request, for `wg setconf`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use super::Files;
use crate::Federation;
use crate::text::header;

pub const DIR: &str = "deploy/hosts/wireguard";

/// Which tool reads the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `wg-quick up FILE`: addresses, MTU and the key file; no secret inside.
    WgQuick,
    /// `wg setconf IFACE FILE`: the private key inline, no addresses (set them with `ip`).
    SetConf,
}

/// Where the keys come from.
#[derive(Clone, Copy, Debug)]
pub enum Keys<'a> {
    /// The committed template: placeholders for the peers' public keys.
    Template,
    /// Deploy time: every peer's public key (by node name) and, for [`Format::SetConf`], this
    /// node's private key.
    Deploy { public_keys: &'a BTreeMap<String, String>, private_key: Option<&'a str> },
}

/// Deploy-time choices.
#[derive(Clone, Debug)]
pub struct Options {
    pub format: Format,
    /// Only these peers (bringing a mesh up a site at a time); all when `None`.
    pub only_peers: Option<BTreeSet<String>>,
    /// Peer endpoints that differ from the description (a NAT in between).
    pub endpoints: BTreeMap<String, SocketAddr>,
    /// The private key file wg-quick loads; the description's `mesh.private_key_file` when `None`.
    pub private_key_file: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options { format: Format::WgQuick, only_peers: None, endpoints: BTreeMap::new(), private_key_file: None }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireguardError {
    #[error("VAULT-DP-110: {0} is not a node of deploy/federation.toml")]
    UnknownNode(String),
    #[error("VAULT-DP-110: peer {0} is not a node of deploy/federation.toml")]
    UnknownPeer(String),
    #[error("VAULT-DP-111: no public key for peer {0} (expected {0}.pub in the keys directory)")]
    MissingPublicKey(String),
    #[error("VAULT-DP-111: the {what} is not a WireGuard key: {why}")]
    BadKey { what: String, why: String },
    #[error("VAULT-DP-111: the setconf format needs this node's private key")]
    MissingPrivateKey,
}

/// Checks that `s` is a WireGuard key (base64 of 32 bytes, as `wg genkey`/`wg pubkey` print).
pub fn check_key(s: &str) -> Result<(), String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    if b.len() != 44 || b[43] != b'=' {
        return Err(format!("{} characters; a key is 44 ending in '='", b.len()));
    }
    let mut last = 0;
    for &c in &b[..43] {
        match ALPHABET.iter().position(|&a| a == c) {
            Some(i) => last = i,
            None => return Err(format!("{:?} is not a base64 character", c as char)),
        }
    }
    // 32 bytes are 256 bits: the 43rd character carries 4 of them and two zero bits.
    if last & 0b11 != 0 {
        return Err("it does not decode to exactly 32 bytes".into());
    }
    Ok(())
}

/// One node's WireGuard config.
pub fn wireguard_conf(f: &Federation, node: &str, keys: Keys<'_>, opts: &Options) -> Result<String, WireguardError> {
    let me = f.node(node).ok_or_else(|| WireguardError::UnknownNode(node.to_owned()))?;
    let mesh = &f.spec().mesh;
    if let Some(only) = &opts.only_peers {
        for p in only {
            if f.node(p).is_none() {
                return Err(WireguardError::UnknownPeer(p.clone()));
            }
        }
    }
    for p in opts.endpoints.keys() {
        if f.node(p).is_none() {
            return Err(WireguardError::UnknownPeer(p.clone()));
        }
    }
    let mut s = match keys {
        Keys::Template => header(&[
            &format!("WireGuard mesh interface {} of node {} (template).", mesh.interface, me.name),
            "The peers' public keys are filled in at deploy time:",
            &format!(
                "  cyvault deploy wireguard --node {} --public-keys-dir DIR > /etc/wireguard/{}.conf",
                me.name, mesh.interface
            ),
            "The private key never leaves the host: wg-quick loads it from the key file in PostUp.",
        ]),
        Keys::Deploy { .. } => format!(
            "# WireGuard mesh interface {} of node {}, rendered by cyvault deploy wireguard from\n\
             # deploy/federation.toml with deploy-time keys. Regenerate rather than edit.\n",
            mesh.interface, me.name
        ),
    };
    let port = me.listen_port.unwrap_or(mesh.listen_port);
    s.push_str(&format!("\n[Interface]\n# {} in {} ({})\n", me.name, me.cluster, f.site_of(me)));
    match opts.format {
        Format::WgQuick => {
            let key_file = opts.private_key_file.as_deref().unwrap_or(&mesh.private_key_file);
            s.push_str(&format!(
                "Address = {}/{}\nListenPort = {port}\nMTU = {}\nPostUp = wg set %i private-key {key_file}\n",
                me.overlay_address, mesh.overlay_cidr.prefix, mesh.mtu
            ));
        }
        Format::SetConf => {
            let private = match keys {
                Keys::Deploy { private_key: Some(k), .. } => k,
                _ => return Err(WireguardError::MissingPrivateKey),
            };
            check_key(private).map_err(|why| WireguardError::BadKey { what: "private key".into(), why })?;
            s.push_str(&format!(
                "# Address {}/{} (set with ip address add)\n",
                me.overlay_address, mesh.overlay_cidr.prefix
            ));
            s.push_str(&format!("PrivateKey = {private}\nListenPort = {port}\n"));
        }
    }
    for peer in f.spec().nodes.iter().filter(|n| n.name != me.name) {
        if opts.only_peers.as_ref().is_some_and(|only| !only.contains(&peer.name)) {
            continue;
        }
        let public = match keys {
            Keys::Template => format!("{{{{public_key:{}}}}}", peer.name),
            Keys::Deploy { public_keys, .. } => {
                let k =
                    public_keys.get(&peer.name).ok_or_else(|| WireguardError::MissingPublicKey(peer.name.clone()))?;
                check_key(k)
                    .map_err(|why| WireguardError::BadKey { what: format!("public key of {}", peer.name), why })?;
                k.clone()
            }
        };
        let endpoint = opts
            .endpoints
            .get(&peer.name)
            .copied()
            .unwrap_or_else(|| SocketAddr::new(peer.endpoint.into(), peer.listen_port.unwrap_or(mesh.listen_port)));
        s.push_str(&format!(
            "\n[Peer]\n# {} in {} ({})\nPublicKey = {public}\nEndpoint = {endpoint}\nAllowedIPs = {}/32\nPersistentKeepalive = {}\n",
            peer.name,
            peer.cluster,
            f.site_of(peer),
            peer.overlay_address,
            mesh.persistent_keepalive_secs
        ));
    }
    Ok(s)
}

pub fn render_templates(f: &Federation, out: &mut Files) {
    for n in &f.spec().nodes {
        // A validated description names every node it lists, so this cannot fail.
        if let Ok(text) = wireguard_conf(f, &n.name, Keys::Template, &Options::default()) {
            out.insert(format!("{DIR}/{}.conf.tmpl", n.name), text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check_key;

    #[test]
    fn keys_are_checked() {
        assert_eq!(check_key("yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="), Ok(()));
        assert!(check_key("yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBml=").is_err()); // 33rd byte bits
        assert!(check_key("short=").is_err());
        assert!(check_key("yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBm!=").is_err());
    }
}
