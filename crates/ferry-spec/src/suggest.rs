//! "Did you mean" suggestions: the closest known name to a misspelt one, when it is close enough.

/// The edit distance between two strings, in characters: insertions, deletions,
/// substitutions and swaps of two neighbours (optimal string alignment), because a swap
/// (`szie`) is the most common typo of all.
pub(crate) fn edit_distance(left: &str, right: &str) -> usize {
    let left: Vec<char> = left.chars().collect();
    let right: Vec<char> = right.chars().collect();
    let width = right.len() + 1;
    let mut table = vec![0; (left.len() + 1) * width];
    for (row, cell) in table.iter_mut().step_by(width).enumerate() {
        *cell = row;
    }
    for (column, cell) in table.iter_mut().take(width).enumerate() {
        *cell = column;
    }
    for row in 1..=left.len() {
        for column in 1..=right.len() {
            let cost = usize::from(left[row - 1] != right[column - 1]);
            let mut best = (table[(row - 1) * width + column - 1] + cost)
                .min(table[(row - 1) * width + column] + 1)
                .min(table[row * width + column - 1] + 1);
            if row > 1
                && column > 1
                && left[row - 1] == right[column - 2]
                && left[row - 2] == right[column - 1]
            {
                best = best.min(table[(row - 2) * width + column - 2] + 1);
            }
            table[row * width + column] = best;
        }
    }
    table[left.len() * width + right.len()]
}

/// The candidate closest to `wanted`, if it is within a third of its length (at least one
/// edit), so that a suggestion is a likely typo rather than an unrelated word. Ties go to the
/// first candidate, which keeps messages deterministic.
pub(crate) fn closest<'a>(
    wanted: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (wanted.chars().count() / 3).max(1);
    let mut best: Option<(usize, &str)> = None;
    for candidate in candidates {
        // A length difference beyond the limit can never be within it: skip the full count.
        if candidate.len().abs_diff(wanted.len()) > limit {
            continue;
        }
        let distance = edit_distance(wanted, candidate);
        if distance <= limit && best.is_none_or(|(best_distance, _)| distance < best_distance) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, candidate)| candidate)
}

/// `did you mean `x`?`, or nothing.
pub(crate) fn did_you_mean<'a>(
    wanted: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    closest(wanted, candidates).map(|found| format!("did you mean `{found}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_and_suggestions() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("szie", "size"), 1);
        assert_eq!(closest("szie", ["name", "size", "sku"]), Some("size"));
        assert_eq!(closest("virtual_machine", ["vm", "vnet"]), None);
        assert_eq!(closest("x", ["vm"]), None);
    }
}
