//! Event notes the API server accepts: events.k8s.io/v1 refuses a note over 1024 bytes (found
//! on the real API server: an API error's full text is longer, and the Event was lost).

/// Largest note the API server accepts, in bytes.
pub const MAX_NOTE: usize = 1024;

/// `note` cut to [`MAX_NOTE`] bytes at a character boundary, ending in `…` when cut.
pub fn fit(mut note: String) -> String {
    if note.len() <= MAX_NOTE {
        return note;
    }
    const MARK: &str = "…";
    let mut end = MAX_NOTE - MARK.len();
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    note.truncate(end);
    note.push_str(MARK);
    note
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_notes_are_kept_and_long_ones_cut_at_a_character() {
        assert_eq!(fit("applied".into()), "applied");
        let exact = "a".repeat(MAX_NOTE);
        assert_eq!(fit(exact.clone()), exact);
        let long = "é".repeat(MAX_NOTE);
        let cut = fit(long);
        assert!(cut.len() <= MAX_NOTE && cut.ends_with('…'), "{} bytes", cut.len());
        assert!(cut.trim_end_matches('…').chars().all(|c| c == 'é'));
    }
}
