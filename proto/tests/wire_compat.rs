//! Mechanical proof that `proto/csi.proto` is wire-compatible with the CSI v1.12 reference.
//!
//! Both files are compiled with protox at test time and flattened into "facts": one line per
//! package, import, service, method, message, field, oneof, enum, enum value and extension, each
//! carrying everything that matters on the wire or to a generated stub (numbers, types, labels,
//! type names, oneof membership, proto3 `optional`, JSON names, streaming, custom options). The
//! two fact sets must be identical; a failure lists every difference, not just the first.
//!
//! The reference is `../shared/spec/csi.proto` beside the repository (CI clones it that way). If
//! it is missing the test fails: it never skips.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use prost::Message as _;
use prost_reflect::{
    DescriptorPool, DynamicMessage, EnumDescriptor, FileDescriptor, MessageDescriptor, ReflectMessage as _, Value,
};

use cyvault_proto::csi::v1 as csi;

/// Key (what the element is) to value (everything we compare about it).
type Facts = BTreeMap<String, String>;

const FILE_NAME: &str = "csi.proto";

fn ours_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(FILE_NAME)
}

fn reference_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/spec").join(FILE_NAME)
}

/// Compiles `dir/csi.proto` (and its google.protobuf imports) into a descriptor pool.
fn compile(path: &Path) -> DescriptorPool {
    assert!(
        path.is_file(),
        "{} does not exist. The wire-compatibility test needs the CSI v1.12 reference proto at \
         ../shared/spec/csi.proto relative to the repository root (the shared/ folder is cloned \
         beside the repository); this test fails rather than skip without it",
        path.display()
    );
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut compiler = match protox::Compiler::new([dir]) {
        Ok(c) => c,
        Err(e) => panic!("protox include path {}: {e:?}", dir.display()),
    };
    if let Err(e) = compiler.open_file(FILE_NAME) {
        panic!("protox failed to compile {}: {e:?}", path.display());
    }
    compiler.descriptor_pool()
}

fn file(pool: &DescriptorPool) -> FileDescriptor {
    match pool.get_file_by_name(FILE_NAME) {
        Some(f) => f,
        None => panic!("{FILE_NAME} is not in the descriptor pool"),
    }
}

/// Every option set on an element, standard and custom (extensions), in a stable order.
fn options(opts: &DynamicMessage) -> String {
    let mut parts: Vec<String> = opts.fields().map(|(f, v)| format!("{}={v:?}", f.name())).collect();
    parts.extend(opts.extensions().map(|(e, v)| format!("({})={v:?}", e.full_name())));
    parts.extend(opts.unknown_fields().map(|u| format!("unknown#{}", u.number())));
    parts.sort();
    format!("{{{}}}", parts.join(", "))
}

fn enum_facts(e: &EnumDescriptor, facts: &mut Facts) {
    facts.insert(format!("enum {}", e.full_name()), format!("options={}", options(&e.options())));
    for v in e.values() {
        facts.insert(
            format!("enum value {}.{}", e.full_name(), v.name()),
            format!("number={} options={}", v.number(), options(&v.options())),
        );
    }
}

fn message_facts(m: &MessageDescriptor, facts: &mut Facts) {
    let oneofs: Vec<String> = m.oneofs().map(|o| o.name().to_owned()).collect();
    facts.insert(
        format!("message {}", m.full_name()),
        format!("map_entry={} oneofs={oneofs:?} options={}", m.is_map_entry(), options(&m.options())),
    );
    for o in m.oneofs() {
        let members: Vec<String> = o.fields().map(|f| f.name().to_owned()).collect();
        facts.insert(
            format!("oneof {}.{}", m.full_name(), o.name()),
            format!("synthetic={} fields={members:?} options={}", o.is_synthetic(), options(&o.options())),
        );
    }
    for f in m.fields() {
        let p = f.field_descriptor_proto();
        let oneof = f.containing_oneof().map_or_else(|| "-".to_owned(), |o| o.name().to_owned());
        facts.insert(
            format!("field {}.{}", m.full_name(), f.name()),
            format!(
                "number={} type={:?} type_name={:?} label={:?} oneof={oneof} proto3_optional={} \
                 json_name={:?} default={:?} options={}",
                p.number(),
                p.r#type(),
                p.type_name(),
                p.label(),
                p.proto3_optional(),
                p.json_name(),
                p.default_value(),
                options(&f.options()),
            ),
        );
    }
    for child in m.child_messages() {
        message_facts(&child, facts);
    }
    for e in m.child_enums() {
        enum_facts(&e, facts);
    }
    for x in m.child_extensions() {
        facts.insert(format!("nested extension {}", x.full_name()), format!("{:?}", x.field_descriptor_proto()));
    }
}

/// Flattens the schema of `csi.proto` in `pool` into facts.
fn schema_facts(pool: &DescriptorPool) -> Facts {
    let file = file(pool);
    let mut facts = Facts::new();
    facts.insert("file package".to_owned(), file.package_name().to_owned());
    facts.insert("file syntax".to_owned(), format!("{:?}", file.syntax()));
    let imports: Vec<String> = file.dependencies().map(|d| d.name().to_owned()).collect();
    facts.insert("file imports".to_owned(), format!("{imports:?}"));

    for s in file.services() {
        let methods: Vec<String> = s.methods().map(|m| m.name().to_owned()).collect();
        facts.insert(
            format!("service {}", s.full_name()),
            format!("methods={methods:?} options={}", options(&s.options())),
        );
        for m in s.methods() {
            facts.insert(
                format!("method {}", m.full_name()),
                format!(
                    "input={} output={} client_streaming={} server_streaming={} options={}",
                    m.input().full_name(),
                    m.output().full_name(),
                    m.is_client_streaming(),
                    m.is_server_streaming(),
                    options(&m.options()),
                ),
            );
        }
    }
    for m in file.messages() {
        message_facts(&m, &mut facts);
    }
    for e in file.enums() {
        enum_facts(&e, &mut facts);
    }
    for x in file.extensions() {
        let p = x.field_descriptor_proto();
        facts.insert(
            format!("extension {}", x.full_name()),
            format!(
                "extendee={} number={} type={:?} type_name={:?} label={:?} options={}",
                x.containing_message().full_name(),
                p.number(),
                p.r#type(),
                p.type_name(),
                p.label(),
                options(&x.options()),
            ),
        );
    }
    facts
}

/// Every difference between two fact sets, in key order.
fn diff(ours: &Facts, reference: &Facts) -> Vec<String> {
    let mut out = Vec::new();
    for (key, want) in reference {
        match ours.get(key) {
            None => out.push(format!("missing in ours: {key}\n    reference: {want}")),
            Some(got) if got != want => {
                out.push(format!("differs: {key}\n    ours:      {got}\n    reference: {want}"));
            }
            Some(_) => {}
        }
    }
    for (key, got) in ours {
        if !reference.contains_key(key) {
            out.push(format!("not in reference: {key}\n    ours: {got}"));
        }
    }
    out
}

fn assert_same(ours: &Facts, reference: &Facts, what: &str) {
    let diffs = diff(ours, reference);
    assert!(diffs.is_empty(), "{what}: {} difference(s):\n{}", diffs.len(), diffs.join("\n"));
}

#[test]
fn schema_matches_reference() {
    let reference = schema_facts(&compile(&reference_path()));
    let ours = schema_facts(&compile(&ours_path()));

    // Guard against a traversal that sees nothing and so "matches" trivially.
    for key in [
        "file package",
        "service csi.v1.Identity",
        "service csi.v1.Controller",
        "service csi.v1.GroupController",
        "service csi.v1.SnapshotMetadata",
        "service csi.v1.Node",
        "method csi.v1.SnapshotMetadata.GetMetadataDelta",
        "field csi.v1.CreateVolumeRequest.secrets",
        "enum value csi.v1.ControllerServiceCapability.RPC.Type.GET_SNAPSHOT",
        "extension csi.v1.csi_secret",
    ] {
        assert!(reference.contains_key(key), "reference facts lack {key:?}: traversal is broken");
    }
    assert_eq!(reference["file package"], "csi.v1");
    assert!(reference.len() > 500, "only {} facts extracted from the reference", reference.len());

    assert_same(&ours, &reference, "proto/csi.proto vs the CSI v1.12 reference");
}

/// A missing reference is a failure with a message saying where it was looked for, never a skip.
#[test]
#[should_panic(expected = "does not exist. The wire-compatibility test needs the CSI v1.12 reference")]
fn missing_reference_fails_loudly() {
    compile(Path::new("/nonexistent/shared/spec/csi.proto"));
}

#[test]
fn diff_reports_every_difference() {
    let reference = schema_facts(&compile(&ours_path()));
    let mut ours = reference.clone();
    ours.remove("field csi.v1.Volume.volume_id");
    ours.insert("field csi.v1.Volume.extra".to_owned(), "number=99".to_owned());
    if let Some(v) = ours.get_mut("extension csi.v1.csi_secret") {
        *v = v.replace("number=1059", "number=1061");
    }
    let diffs = diff(&ours, &reference);
    assert_eq!(diffs.len(), 3, "{diffs:#?}");
    assert!(diffs.iter().any(|d| d.starts_with("missing in ours: field csi.v1.Volume.volume_id")));
    assert!(diffs.iter().any(|d| d.starts_with("not in reference: field csi.v1.Volume.extra")));
    assert!(diffs.iter().any(|d| d.starts_with("differs: extension csi.v1.csi_secret")));
}

/// The exported `FILE_DESCRIPTOR_SET` is self-contained (imports included) and describes exactly
/// `csi.proto`, custom options and all.
#[test]
fn exported_descriptor_set_matches_schema() {
    let exported = match DescriptorPool::decode(cyvault_proto::FILE_DESCRIPTOR_SET) {
        Ok(p) => p,
        Err(e) => panic!("FILE_DESCRIPTOR_SET does not decode into a pool: {e}"),
    };
    let compiled = schema_facts(&compile(&ours_path()));
    assert_same(&schema_facts(&exported), &compiled, "FILE_DESCRIPTOR_SET vs proto/csi.proto");
}

fn sample_request() -> csi::CreateVolumeRequest {
    use csi::volume_capability::{AccessMode, AccessType, MountVolume, access_mode::Mode};
    csi::CreateVolumeRequest {
        name: "pvc-1234".to_owned(),
        capacity_range: Some(csi::CapacityRange { required_bytes: 10 << 30, limit_bytes: 0 }),
        volume_capabilities: vec![csi::VolumeCapability {
            access_type: Some(AccessType::Mount(MountVolume {
                fs_type: "ext4".to_owned(),
                mount_flags: vec!["noatime".to_owned()],
                volume_mount_group: String::new(),
            })),
            access_mode: Some(AccessMode { mode: Mode::SingleNodeWriter as i32 }),
        }],
        parameters: [("pool".to_owned(), "rbd-ssd".to_owned())].into(),
        secrets: [("userKey".to_owned(), "s3cr3t".to_owned())].into(),
        volume_content_source: Some(csi::VolumeContentSource {
            r#type: Some(csi::volume_content_source::Type::Snapshot(csi::volume_content_source::SnapshotSource {
                snapshot_id: "snap-1".to_owned(),
            })),
        }),
        accessibility_requirements: Some(csi::TopologyRequirement {
            requisite: vec![csi::Topology { segments: [("zone".to_owned(), "nyc1".to_owned())].into() }],
            preferred: vec![],
        }),
        mutable_parameters: [("iops".to_owned(), "5000".to_owned())].into(),
    }
}

fn get<'a>(msg: &'a DynamicMessage, name: &str) -> std::borrow::Cow<'a, Value> {
    match msg.descriptor().get_field_by_name(name) {
        Some(f) => msg.get_field(&f),
        None => panic!("{} has no field {name}", msg.descriptor().full_name()),
    }
}

/// Bytes written by our generated types are read by the reference schema with the same meaning,
/// and bytes re-encoded from the reference schema decode back to the same Rust value.
#[test]
fn generated_bytes_read_back_through_reference_schema() {
    let pool = compile(&reference_path());
    let desc = match pool.get_message_by_name("csi.v1.CreateVolumeRequest") {
        Some(d) => d,
        None => panic!("reference has no csi.v1.CreateVolumeRequest"),
    };
    let req = sample_request();
    let bytes = req.encode_to_vec();

    let dynamic = match DynamicMessage::decode(desc, bytes.as_slice()) {
        Ok(m) => m,
        Err(e) => panic!("reference schema cannot decode our bytes: {e}"),
    };
    assert_eq!(get(&dynamic, "name").as_str(), Some("pvc-1234"));
    let range = get(&dynamic, "capacity_range");
    assert_eq!(range.as_message().map(|m| get(m, "required_bytes").as_i64()), Some(Some(10 << 30)));
    let secrets = get(&dynamic, "secrets");
    let secret = secrets.as_map().and_then(|m| m.get(&prost_reflect::MapKey::String("userKey".to_owned())));
    assert_eq!(secret.and_then(Value::as_str), Some("s3cr3t"));
    let source = get(&dynamic, "volume_content_source");
    let snapshot_id = source
        .as_message()
        .and_then(|s| get(s, "snapshot").as_message().map(|snap| get(snap, "snapshot_id").into_owned()));
    assert_eq!(snapshot_id.as_ref().and_then(Value::as_str), Some("snap-1"));
    let caps = get(&dynamic, "volume_capabilities");
    let mode = caps
        .as_list()
        .and_then(|l| l.first())
        .and_then(Value::as_message)
        .and_then(|cap| get(cap, "access_mode").as_message().and_then(|am| get(am, "mode").as_enum_number()));
    assert_eq!(mode, Some(1), "SINGLE_NODE_WRITER is 1 in the reference");
    assert!(dynamic.unknown_fields().next().is_none(), "reference saw unknown fields");

    let back = match csi::CreateVolumeRequest::decode(dynamic.encode_to_vec().as_slice()) {
        Ok(r) => r,
        Err(e) => panic!("our type cannot decode the reference's bytes: {e}"),
    };
    assert_eq!(back, req);
}
