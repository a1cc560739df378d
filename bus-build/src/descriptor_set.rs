//! The encoded `FileDescriptorSet` each package with events carries, so that a program built
//! against the generated crate can turn its events into JSON and back (the protobuf JSON
//! mapping, with `prost-reflect`) without a second copy of the schema.
//!
//! The set of a package holds the package's files and every file they import, directly or not
//! (well-known types and `bus/options.proto` included), in dependency order: it decodes on its
//! own. Source info is kept only where it carries comments, which tools show as descriptions.

use std::collections::HashSet;

use prost::Message as _;
use prost_types::{FileDescriptorProto, FileDescriptorSet};

/// The file, in the output directory, holding the descriptor set of `package`.
pub(crate) fn file_name(package: &str) -> String {
    format!("{package}.descriptor_set.bin")
}

/// The encoded descriptor set of `package`, from `fds` (every file the build read, imports
/// first, as protox returns them).
pub(crate) fn encode(fds: &FileDescriptorSet, package: &str) -> Vec<u8> {
    let mut wanted: HashSet<&str> = HashSet::new();
    // Walk from the package's files to everything they import. Files come imports first, so a
    // reverse pass sees every importer before what it imports.
    for file in fds.file.iter().rev() {
        if file.package() == package || wanted.contains(file.name()) {
            wanted.insert(file.name());
            wanted.extend(file.dependency.iter().map(String::as_str));
        }
    }
    let file = fds
        .file
        .iter()
        .filter(|f| wanted.contains(f.name()))
        .map(comments_only)
        .collect();
    FileDescriptorSet { file }.encode_to_vec()
}

/// `file` with only the source locations that carry a comment.
fn comments_only(file: &FileDescriptorProto) -> FileDescriptorProto {
    let mut file = file.clone();
    if let Some(info) = &mut file.source_code_info {
        info.location.retain_mut(|l| {
            l.leading_detached_comments.clear();
            l.leading_comments.is_some() || l.trailing_comments.is_some()
        });
        if info.location.is_empty() {
            file.source_code_info = None;
        }
    }
    file
}

#[cfg(test)]
mod tests {
    use prost_types::source_code_info::Location;
    use prost_types::{FileDescriptorProto, FileDescriptorSet, SourceCodeInfo};

    use super::*;

    fn file(name: &str, package: &str, deps: &[&str]) -> FileDescriptorProto {
        FileDescriptorProto {
            name: Some(name.into()),
            package: Some(package.into()),
            dependency: deps.iter().map(|d| (*d).to_owned()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_package_set_holds_its_files_and_their_imports_only() {
        let fds = FileDescriptorSet {
            file: vec![
                file("google/protobuf/timestamp.proto", "google.protobuf", &[]),
                file("a/common.proto", "a", &["google/protobuf/timestamp.proto"]),
                file("b/other.proto", "b", &[]),
                file("a/events.proto", "a.events", &["a/common.proto"]),
            ],
        };
        let set = FileDescriptorSet::decode(encode(&fds, "a.events").as_slice()).unwrap();
        let names: Vec<_> = set.file.iter().map(|f| f.name()).collect();
        assert_eq!(
            names,
            [
                "google/protobuf/timestamp.proto",
                "a/common.proto",
                "a/events.proto"
            ]
        );
    }

    #[test]
    fn only_commented_locations_are_kept() {
        let mut f = file("a.proto", "a", &[]);
        f.source_code_info = Some(SourceCodeInfo {
            location: vec![
                Location {
                    path: vec![4, 0],
                    span: vec![1, 0, 10],
                    leading_comments: Some(" An event.\n".into()),
                    trailing_comments: None,
                    leading_detached_comments: vec![" license\n".into()],
                },
                Location {
                    path: vec![4, 0, 2, 0],
                    span: vec![2, 2, 20],
                    ..Default::default()
                },
            ],
        });
        let kept = comments_only(&f).source_code_info.unwrap().location;
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].path, [4, 0]);
        assert!(kept[0].leading_detached_comments.is_empty());
    }
}
