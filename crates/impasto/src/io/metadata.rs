//! Embedding the run's parameters in saved images: PNG text chunks and a minimal EXIF block.

/// EXIF tag ImageDescription.
const TAG_IMAGE_DESCRIPTION: u16 = 0x010E;
/// EXIF tag Software.
const TAG_SOFTWARE: u16 = 0x0131;
/// TIFF field type ASCII.
const TYPE_ASCII: u16 = 2;

/// Checks that `key` can be a PNG text keyword: 1 to 79 Latin-1 characters, printable, no leading,
/// trailing or double spaces.
pub(super) fn check_key(key: &str) -> Result<(), String> {
    let ok = (1..=79).contains(&key.chars().count())
        && key.chars().all(|c| matches!(c as u32, 0x20..=0x7E | 0xA1..=0xFF))
        && !key.starts_with(' ')
        && !key.ends_with(' ')
        && !key.contains("  ");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid metadata key {key:?} (use 1 to 79 printable Latin-1 characters, no leading, trailing or double spaces)"
        ))
    }
}

/// The `key: value` lines that go into EXIF ImageDescription.
pub(super) fn description(metadata: &[(String, String)]) -> String {
    metadata.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join("\n")
}

/// The most bytes of ImageDescription written (a JPEG APP1 segment holds at most 64 KiB).
const MAX_DESCRIPTION_BYTES: usize = 60_000;

/// A minimal little-endian EXIF (TIFF-structured) block, without the `Exif\0\0` prefix, holding
/// ImageDescription (when `description` is not empty) and Software in IFD0. Strings are written as
/// their UTF-8 bytes (EXIF says ASCII; readers accept UTF-8 in practice), NUL-terminated; a description
/// longer than 60 000 bytes is cut there.
pub(super) fn exif_blob(description: &str, software: &str) -> Vec<u8> {
    let mut cut = description.len().min(MAX_DESCRIPTION_BYTES);
    while !description.is_char_boundary(cut) {
        cut -= 1;
    }
    let description = &description[..cut];
    let mut entries: Vec<(u16, &str)> = Vec::new();
    if !description.is_empty() {
        entries.push((TAG_IMAGE_DESCRIPTION, description));
    }
    entries.push((TAG_SOFTWARE, software));
    let mut out = b"II*\0".to_vec();
    out.extend_from_slice(&8u32.to_le_bytes());
    let ifd_len = 2 + 12 * entries.len() + 4;
    let mut data_offset = 8 + ifd_len;
    let mut data = Vec::new();
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    for (tag, text) in &entries {
        let mut bytes = text.replace('\0', " ").into_bytes();
        bytes.push(0);
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&TYPE_ASCII.to_le_bytes());
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        if bytes.len() <= 4 {
            bytes.resize(4, 0);
            out.extend_from_slice(&bytes);
        } else {
            out.extend_from_slice(&(data_offset as u32).to_le_bytes());
            if bytes.len() % 2 == 1 {
                bytes.push(0); // keep offsets word-aligned
            }
            data_offset += bytes.len();
            data.extend_from_slice(&bytes);
        }
    }
    out.extend_from_slice(&0u32.to_le_bytes()); // no next IFD
    out.extend_from_slice(&data);
    out
}
