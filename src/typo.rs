//! Did-you-mean hints: the known name nearest to a misspelt one (a config field, a provider).

/// The known name closest to a typo, when it is close enough to be a useful hint.
pub fn closest<'a>(key: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (edit_distance(key, c), c))
        .filter(|(d, c)| *d <= typo_distance(c))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// How many edits still make a typo of `name`: one for a short name (`rpm`, `tpm`, `order`),
/// where two would match unrelated words, else two, or a fifth of a long name.
fn typo_distance(name: &str) -> usize {
    if name.len() <= 5 {
        1
    } else {
        2.max(name.len() / 5)
    }
}

pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len().saturating_add(1));
        cur.push(i.saturating_add(1));
        for (j, cb) in b.iter().enumerate() {
            let sub = prev
                .get(j)
                .copied()
                .unwrap_or(0)
                .saturating_add(usize::from(ca != *cb));
            let del = prev
                .get(j.saturating_add(1))
                .copied()
                .unwrap_or(0)
                .saturating_add(1);
            let ins = cur.get(j).copied().unwrap_or(0).saturating_add(1);
            cur.push(sub.min(del).min(ins));
        }
        prev = cur;
    }
    prev.last().copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("api_bse", "api_base"), 1);
        assert_eq!(
            closest("api_bse", ["api_base", "api_key"].into_iter()),
            Some("api_base")
        );
        assert_eq!(closest("zzzzzz", ["api_base"].into_iter()), None);
        // Short names take one edit, so `tags` is no typo of `tpm`.
        assert_eq!(closest("rpn", ["rpm"].into_iter()), Some("rpm"));
        assert_eq!(closest("tags", ["tpm", "rpm"].into_iter()), None);
    }
}
