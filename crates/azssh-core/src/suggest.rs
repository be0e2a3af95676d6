//! "Did you mean": the names nearest to a mistyped one, for hints (a function, a property, a VM,
//! a resource group). Optimal string alignment distance, so a swapped pair of letters counts as
//! one edit, as in clap's suggestions.

/// Up to three candidates within a few edits of `word` (case-insensitive), nearest first.
pub fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let wanted = word.to_lowercase();
    // Short names allow fewer edits, or every 3-letter word would match every other.
    let limit = (wanted.chars().count() / 3).clamp(1, 3);
    let mut scored: Vec<(usize, &str)> = candidates
        .into_iter()
        .filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case(word))
        .map(|c| (strsim::osa_distance(&wanted, &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(3).map(|(_, c)| c).collect()
}

/// `` `a` `` / `` `a` or `b` `` / `` `a`, `b` or `c` ``, for a hint.
pub fn one_of(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_names_first_far_ones_never() {
        let names = ["parse_json", "to_json", "powershell", "sleep"];
        assert_eq!(nearest("pars_json", names), vec!["parse_json"]);
        assert_eq!(nearest("powershel", names), vec!["powershell"]);
        assert!(nearest("frobnicate", names).is_empty());
        assert_eq!(
            nearest("dc-prod-01", ["dc-prod-001", "app-dev-004"]),
            vec!["dc-prod-001"]
        );
    }

    #[test]
    fn the_same_name_is_no_suggestion() {
        assert!(nearest("Sleep", ["sleep"]).is_empty());
    }

    #[test]
    fn lists_read_as_a_sentence() {
        assert_eq!(one_of(&["a"]), "`a`");
        assert_eq!(one_of(&["a", "b", "c"]), "`a`, `b` or `c`");
    }
}
