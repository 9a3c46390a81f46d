//! The input line: editing, history and Tab completion. Pure state; the
//! terminal code maps keys onto these methods.

use std::collections::BTreeSet;

use chatd_core::native::help::COMMANDS;

/// Lines kept for Up/Down.
const HISTORY: usize = 200;

/// The line being typed.
#[derive(Debug, Default, Clone)]
pub(crate) struct LineEditor {
    text: Vec<char>,
    cursor: usize,
    history: Vec<String>,
    /// Position while browsing history (None: editing a new line).
    browsing: Option<usize>,
    /// The new line put aside while browsing.
    draft: Vec<char>,
}

impl LineEditor {
    /// The text typed so far.
    pub(crate) fn text(&self) -> String {
        self.text.iter().collect()
    }

    /// The cursor, in characters from the start.
    pub(crate) fn cursor(&self) -> usize {
        self.cursor
    }

    pub(crate) fn insert(&mut self, c: char) {
        self.text.insert(self.cursor, c);
        self.cursor += 1;
    }

    pub(crate) fn backspace(&mut self) {
        if self.cursor > 0 {
            self.cursor -= 1;
            self.text.remove(self.cursor);
        }
    }

    pub(crate) fn delete(&mut self) {
        if self.cursor < self.text.len() {
            self.text.remove(self.cursor);
        }
    }

    pub(crate) fn left(&mut self) {
        self.cursor = self.cursor.saturating_sub(1);
    }

    pub(crate) fn right(&mut self) {
        self.cursor = (self.cursor + 1).min(self.text.len());
    }

    pub(crate) fn home(&mut self) {
        self.cursor = 0;
    }

    pub(crate) fn end(&mut self) {
        self.cursor = self.text.len();
    }

    /// Ctrl-U: delete to the start of the line.
    pub(crate) fn kill_to_start(&mut self) {
        self.text.drain(..self.cursor);
        self.cursor = 0;
    }

    /// Ctrl-W: delete the word before the cursor.
    pub(crate) fn kill_word(&mut self) {
        let mut start = self.cursor;
        while start > 0 && self.text[start - 1] == ' ' {
            start -= 1;
        }
        while start > 0 && self.text[start - 1] != ' ' {
            start -= 1;
        }
        self.text.drain(start..self.cursor);
        self.cursor = start;
    }

    /// Enter: takes the line (empty lines are not sent) into history.
    pub(crate) fn submit(&mut self) -> Option<String> {
        let line = self.text();
        self.text.clear();
        self.cursor = 0;
        self.browsing = None;
        if line.trim().is_empty() {
            return None;
        }
        if self.history.last() != Some(&line) {
            self.history.push(line.clone());
            if self.history.len() > HISTORY {
                self.history.remove(0);
            }
        }
        Some(line)
    }

    /// Up: the previous line from history.
    pub(crate) fn older(&mut self) {
        let next = match self.browsing {
            None if self.history.is_empty() => return,
            None => {
                self.draft = self.text.clone();
                self.history.len() - 1
            }
            Some(0) => 0,
            Some(i) => i - 1,
        };
        self.show_history(next);
    }

    /// Down: the next line, back to the draft at the end.
    pub(crate) fn newer(&mut self) {
        let Some(i) = self.browsing else {
            return;
        };
        if i + 1 < self.history.len() {
            self.show_history(i + 1);
        } else {
            self.browsing = None;
            self.text = std::mem::take(&mut self.draft);
            self.cursor = self.text.len();
        }
    }

    fn show_history(&mut self, index: usize) {
        self.browsing = Some(index);
        self.text = self.history[index].chars().collect();
        self.cursor = self.text.len();
    }

    /// Tab: completes the word before the cursor: a command name at the
    /// start of the line, otherwise a nickname. With several candidates it
    /// completes their common prefix.
    pub(crate) fn complete(&mut self, nicks: &BTreeSet<String>) {
        let mut start = self.cursor;
        while start > 0 && self.text[start - 1] != ' ' {
            start -= 1;
        }
        let word: String = self.text[start..self.cursor].iter().collect();
        if word.is_empty() {
            return;
        }
        let candidates: Vec<String> = if start == 0 && word.starts_with('#') {
            COMMANDS
                .iter()
                .map(|spec| format!("#{}", spec.name))
                .filter(|c| c.starts_with(&word))
                .collect()
        } else {
            let lower = word.to_ascii_lowercase();
            nicks
                .iter()
                .filter(|n| n.to_ascii_lowercase().starts_with(&lower))
                .cloned()
                .collect()
        };
        let Some(first) = candidates.first() else {
            return;
        };
        let mut completion = first.clone();
        for other in &candidates[1..] {
            let common = completion
                .chars()
                .zip(other.chars())
                .take_while(|(a, b)| a.eq_ignore_ascii_case(b))
                .count();
            completion = completion.chars().take(common).collect();
        }
        if candidates.len() == 1 {
            completion.push(' ');
        }
        if completion.chars().count() < word.chars().count() {
            return;
        }
        self.text.splice(start..self.cursor, completion.chars());
        self.cursor = start + completion.chars().count();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(text: &str) -> LineEditor {
        let mut editor = LineEditor::default();
        text.chars().for_each(|c| editor.insert(c));
        editor
    }

    #[test]
    fn editing_moves_and_deletes_around_the_cursor() {
        let mut editor = typed("helo world");
        (0..7).for_each(|_| editor.left());
        editor.insert('l');
        assert_eq!(editor.text(), "hello world");
        editor.end();
        editor.kill_word();
        assert_eq!(editor.text(), "hello ");
        editor.home();
        editor.delete();
        assert_eq!(editor.text(), "ello ");
        editor.end();
        editor.kill_to_start();
        assert_eq!(editor.text(), "");
    }

    #[test]
    fn history_browses_and_returns_to_the_draft() {
        let mut editor = typed("first");
        editor.submit();
        "second".chars().for_each(|c| editor.insert(c));
        editor.submit();
        "draft".chars().for_each(|c| editor.insert(c));
        editor.older();
        assert_eq!(editor.text(), "second");
        editor.older();
        editor.older();
        assert_eq!(editor.text(), "first");
        editor.newer();
        editor.newer();
        assert_eq!(editor.text(), "draft");
        assert_eq!(typed("   ").submit(), None);
    }

    #[test]
    fn tab_completes_commands_at_the_start_and_nicks_elsewhere() {
        let nicks: BTreeSet<String> =
            ["Alice".to_owned(), "alfred".to_owned(), "bob".to_owned()].into();
        let mut editor = typed("#hi");
        editor.complete(&nicks);
        assert_eq!(editor.text(), "#history ");
        let mut editor = typed("#msg b");
        editor.complete(&nicks);
        assert_eq!(editor.text(), "#msg bob ");
        let mut editor = typed("hi al");
        editor.complete(&nicks);
        assert_eq!(editor.text(), "hi Al", "common prefix of Alice and alfred");
        let mut editor = typed("#un");
        editor.complete(&nicks);
        assert_eq!(editor.text(), "#un", "unban and unmute share only #un");
    }
}
