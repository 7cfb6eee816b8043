//! The configuration tree: nodes, tag nodes, leaf values, comments.
//!
//! A node is `{name, values, comment, tag, children}` as in VyOS's config library. Children are
//! always kept sorted in VyOS's natural order ([`crate::natord`]) with unique names, so two trees
//! with the same content are structurally equal and render identically.
//!
//! - A *leaf* is a node without children. It has no value (`disable`), one value, or several
//!   (a multi-value node such as `address`); multi-values keep their insertion order.
//! - A *tag node* (`ethernet`, `rule`) has the tag flag; its children are the tag values (`eth0`),
//!   whose children are the real settings. The flag only changes how the hierarchical format is
//!   rendered (`ethernet eth0 {` instead of `ethernet {` / `eth0 {`).

use crate::natord;

/// A configuration path: the node names from the root, e.g. `["interfaces", "ethernet", "eth0"]`.
pub type Path = Vec<String>;

/// Renders a path as words separated by spaces, the way VyOS prints paths.
pub fn path_to_string<S: AsRef<str>>(path: &[S]) -> String {
    let mut out = String::new();
    for (i, word) in path.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(word.as_ref());
    }
    out
}

/// Splits a path written as words separated by whitespace (`"protocols bgp"`).
pub fn path_from_str(text: &str) -> Path {
    text.split_whitespace().map(str::to_owned).collect()
}

/// One configuration node.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Node {
    name: String,
    values: Vec<String>,
    comment: Option<String>,
    tag: bool,
    children: Vec<Node>,
}

impl Node {
    /// A new node without values, comment or children.
    pub fn new(name: impl Into<String>) -> Self {
        Node { name: name.into(), ..Node::default() }
    }

    /// The node's name (for a tag value node, the tag value such as `eth0`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Leaf values, in stored order.
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// The `/* comment */` attached to the node.
    pub fn comment(&self) -> Option<&str> {
        self.comment.as_deref()
    }

    /// Whether the node is rendered as a tag node.
    pub fn is_tag(&self) -> bool {
        self.tag
    }

    /// Children, sorted in VyOS's natural order.
    pub fn children(&self) -> &[Node] {
        &self.children
    }

    /// Whether the node has no children (a leaf, possibly without values).
    pub fn is_leaf(&self) -> bool {
        self.children.is_empty()
    }

    /// The child with this name.
    pub fn child(&self, name: &str) -> Option<&Node> {
        self.find(name).ok().map(|i| &self.children[i])
    }

    /// Mutable access to the child with this name.
    pub fn child_mut(&mut self, name: &str) -> Option<&mut Node> {
        match self.find(name) {
            Ok(i) => Some(&mut self.children[i]),
            Err(_) => None,
        }
    }

    /// Sets the values, replacing the previous ones.
    pub fn set_values(&mut self, values: Vec<String>) {
        self.values = values;
    }

    /// Appends a value unless it is already present. Returns whether it was added.
    pub fn add_value(&mut self, value: impl Into<String>) -> bool {
        let value = value.into();
        if self.values.contains(&value) {
            return false;
        }
        self.values.push(value);
        true
    }

    /// Sets or clears the comment. It is trimmed as the hierarchical format reads it back
    /// (`/* text */`), and an empty comment clears it, as in VyOS.
    pub fn set_comment(&mut self, comment: Option<String>) {
        self.comment = comment.and_then(|c| {
            let trimmed = trim_comment(&c);
            if trimmed.is_empty() {
                None
            } else if trimmed.len() == c.len() {
                Some(c)
            } else {
                Some(trimmed.to_owned())
            }
        });
    }

    /// Sets the tag flag.
    pub fn set_tag(&mut self, tag: bool) {
        self.tag = tag;
    }

    /// Returns the child with this name, creating an empty one in sorted position if missing.
    pub fn child_or_insert(&mut self, name: &str) -> &mut Node {
        let index = match self.find(name) {
            Ok(i) => i,
            Err(i) => {
                self.children.insert(i, Node::new(name));
                i
            }
        };
        &mut self.children[index]
    }

    /// Inserts a child, replacing an existing child of the same name.
    pub fn insert_child(&mut self, child: Node) {
        match self.find(&child.name) {
            Ok(i) => self.children[i] = child,
            Err(i) => self.children.insert(i, child),
        }
    }

    /// Removes and returns the child with this name.
    pub fn remove_child(&mut self, name: &str) -> Option<Node> {
        match self.find(name) {
            Ok(i) => Some(self.children.remove(i)),
            Err(_) => None,
        }
    }

    /// A copy of this node without children.
    pub fn shallow_clone(&self) -> Node {
        Node {
            name: self.name.clone(),
            values: self.values.clone(),
            comment: self.comment.clone(),
            tag: self.tag,
            children: Vec::new(),
        }
    }

    /// Number of nodes in this subtree, this node included.
    pub fn count_nodes(&self) -> usize {
        1 + self.children.iter().map(Node::count_nodes).sum::<usize>()
    }

    /// Depth of this subtree (a leaf has depth 1).
    pub fn depth(&self) -> usize {
        1 + self.children.iter().map(Node::depth).max().unwrap_or(0)
    }

    fn find(&self, name: &str) -> Result<usize, usize> {
        self.children.binary_search_by(|c| natord::compare(&c.name, name))
    }

    pub(crate) fn from_parts(
        name: String,
        values: Vec<String>,
        comment: Option<String>,
        tag: bool,
        children: Vec<Node>,
    ) -> Node {
        Node { name, values, comment, tag, children }
    }

    pub(crate) fn children_mut_unchecked(&mut self) -> &mut Vec<Node> {
        &mut self.children
    }

    pub(crate) fn take_children(&mut self) -> Vec<Node> {
        std::mem::take(&mut self.children)
    }

    pub(crate) fn values_mut(&mut self) -> &mut Vec<String> {
        &mut self.values
    }

    /// Visits every node with its path (the root of the visit has the given prefix).
    pub fn walk<'a>(&'a self, prefix: &mut Vec<&'a str>, visit: &mut dyn FnMut(&[&'a str], &'a Node)) {
        for child in &self.children {
            prefix.push(&child.name);
            visit(prefix, child);
            child.walk(prefix, visit);
            prefix.pop();
        }
    }
}

/// Whether a node can be written in the hierarchical tag form (`ethernet eth0 {`): it has the
/// tag flag, no comment of its own, and instances without values or tag flags of their own (the
/// form has no place for those; such a node is written as a plain block instead).
pub(crate) fn fits_tag_form(node: &Node) -> bool {
    node.tag && node.comment.is_none() && node.children.iter().all(|c| c.values.is_empty() && !c.tag)
}

/// Sorts nodes by name in natural order.
pub(crate) fn sort_nodes(nodes: &mut [Node]) {
    nodes.sort_by(|a, b| natord::compare(&a.name, &b.name));
}

/// A whole configuration: the unnamed root node and its children.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Tree {
    root: Node,
}

/// Why an edit could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// The path is empty.
    #[error("empty configuration path")]
    EmptyPath,
    /// The path does not exist.
    #[error("configuration path [{0}] does not exist")]
    NotFound(String),
    /// The value is not present on the node.
    #[error("configuration path [{path}] has no value '{value}'")]
    NoSuchValue {
        /// The node's path.
        path: String,
        /// The missing value.
        value: String,
    },
    /// A value was given for a node that has children.
    #[error("configuration path [{0}] has child nodes and cannot take a value")]
    ValueOnInnerNode(String),
    /// A child was requested under a node that holds values.
    #[error("configuration path [{0}] is a leaf with a value and cannot have child nodes")]
    ChildOfValueNode(String),
    /// A path element is empty or contains characters that cannot be a node name
    /// (see [`invalid_name_reason`]).
    #[error("invalid node name {0:?}: {reason}", reason = invalid_name_reason(.0).unwrap_or_default())]
    InvalidName(String),
    /// A comment contains `*/`, which cannot be written in the hierarchical format.
    #[error("comment on [{0}] contains \"*/\", which cannot be stored in a VyOS comment")]
    InvalidComment(String),
}

/// How `set` treats an existing leaf that already has values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueBehaviour {
    /// Append the value (multi-value nodes, and applying computed diffs).
    Add,
    /// Replace the values (single-value nodes).
    Replace,
}

/// A comment without the surrounding whitespace that the hierarchical format drops when it
/// reads `/* text */` (VyOS trims the same characters).
pub(crate) fn trim_comment(text: &str) -> &str {
    text.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0c'))
}

/// Characters a node name cannot hold because the command format refuses them (commands are
/// data, not shell, and path words are written unquoted).
pub const SHELL_CHARS: &str = ";|&<>$`\\()";

/// Why a string cannot be a node name in both formats, or `None` if it can.
///
/// VyOS's node names come from its schema and are plain words; tag instance names (`eth0`,
/// `10.0.0.0/8`, a rule number) are path words on a command line too, so the same rule holds for
/// them. Values are not names: they may hold anything.
pub fn invalid_name_reason(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("a name cannot be empty".to_owned());
    }
    // `//…` and `/*` would read back as comments in the hierarchical format.
    if name.starts_with("//") || name == "/*" {
        return Some("a name cannot start a comment (// or /*)".to_owned());
    }
    for c in name.chars() {
        let problem = match c {
            ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c' => "whitespace",
            '"' | '\'' => "a quote",
            '{' | '}' => "a brace",
            c if c < ' ' || c == '\x7f' => "a control character",
            c if SHELL_CHARS.contains(c) => {
                return Some(format!("{c:?} is not allowed in a name (shell characters {SHELL_CHARS} are refused)"));
            }
            _ => continue,
        };
        return Some(format!("a name cannot contain {problem} ({c:?})"));
    }
    None
}

/// Whether a string can be a node name in both formats (see [`invalid_name_reason`]).
pub fn is_valid_name(name: &str) -> bool {
    invalid_name_reason(name).is_none()
}

impl Tree {
    /// An empty configuration.
    pub fn new() -> Self {
        Tree::default()
    }

    /// Builds a tree from top-level nodes (merging nothing: names must be unique).
    pub fn from_root(root: Node) -> Self {
        let mut tree = Tree { root };
        tree.root.name.clear();
        tree
    }

    /// The unnamed root node.
    pub fn root(&self) -> &Node {
        &self.root
    }

    /// Mutable access to the root node.
    pub fn root_mut(&mut self) -> &mut Node {
        &mut self.root
    }

    /// Top-level nodes.
    pub fn children(&self) -> &[Node] {
        &self.root.children
    }

    /// Whether the configuration has no nodes at all.
    pub fn is_empty(&self) -> bool {
        self.root.children.is_empty()
    }

    /// The node at a path.
    pub fn get<S: AsRef<str>>(&self, path: &[S]) -> Option<&Node> {
        let mut node = &self.root;
        for name in path {
            node = node.child(name.as_ref())?;
        }
        if path.is_empty() { None } else { Some(node) }
    }

    /// Mutable access to the node at a path.
    pub fn get_mut<S: AsRef<str>>(&mut self, path: &[S]) -> Option<&mut Node> {
        if path.is_empty() {
            return None;
        }
        let mut node = &mut self.root;
        for name in path {
            node = node.child_mut(name.as_ref())?;
        }
        Some(node)
    }

    /// Whether a node exists at the path.
    pub fn exists<S: AsRef<str>>(&self, path: &[S]) -> bool {
        self.get(path).is_some()
    }

    /// Values of the node at a path (empty if it does not exist).
    pub fn values<S: AsRef<str>>(&self, path: &[S]) -> &[String] {
        self.get(path).map(Node::values).unwrap_or(&[])
    }

    /// Creates the path (intermediate nodes included) and, if given, sets a value on its last node.
    ///
    /// With a value on an existing leaf, `behaviour` decides between appending and replacing;
    /// a value already present is left as is (VyOS prints "already exists" and succeeds).
    /// `tag_hint` is asked, for every node created, whether it is a tag node.
    /// Returns whether the tree changed.
    pub fn set<S: AsRef<str>>(
        &mut self,
        path: &[S],
        value: Option<&str>,
        behaviour: ValueBehaviour,
        tag_hint: &dyn Fn(&[&str]) -> bool,
    ) -> Result<bool, EditError> {
        if path.is_empty() {
            return Err(EditError::EmptyPath);
        }
        for name in path {
            if !is_valid_name(name.as_ref()) {
                return Err(EditError::InvalidName(name.as_ref().to_owned()));
            }
        }
        let words: Vec<&str> = path.iter().map(AsRef::as_ref).collect();
        let mut node = &mut self.root;
        let mut changed = false;
        for (depth, name) in words.iter().enumerate() {
            if !node.values.is_empty() && node.children.is_empty() && depth > 0 {
                return Err(EditError::ChildOfValueNode(path_to_string(&words[..depth])));
            }
            let existed = node.child(name).is_some();
            let parent_is_tag = node.tag;
            node = node.child_or_insert(name);
            if !existed {
                changed = true;
                // A tag value (child of a tag node) is never itself a tag node.
                if !parent_is_tag && tag_hint(&words[..=depth]) {
                    node.tag = true;
                }
            }
        }
        if let Some(value) = value {
            if !node.children.is_empty() {
                return Err(EditError::ValueOnInnerNode(path_to_string(&words)));
            }
            if !node.values.iter().any(|v| v == value) {
                match behaviour {
                    ValueBehaviour::Add => node.values.push(value.to_owned()),
                    ValueBehaviour::Replace => node.values = vec![value.to_owned()],
                }
                changed = true;
            }
        }
        Ok(changed)
    }

    /// Deletes the node at the path, or one value of it.
    ///
    /// Deleting the only value of a node deletes the node. A tag node left without tag values is
    /// removed too (VyOS's `prune_delete`); other emptied nodes stay, since in VyOS an empty node
    /// can itself be meaningful (`service ssh`).
    pub fn delete<S: AsRef<str>>(&mut self, path: &[S], value: Option<&str>) -> Result<(), EditError> {
        let words: Vec<&str> = path.iter().map(AsRef::as_ref).collect();
        let Some((last, parent_path)) = words.split_last() else {
            return Err(EditError::EmptyPath);
        };
        let node = self.get_mut(&words).ok_or_else(|| EditError::NotFound(path_to_string(&words)))?;
        if let Some(value) = value {
            let Some(index) = node.values.iter().position(|v| v == value) else {
                return Err(EditError::NoSuchValue { path: path_to_string(&words), value: value.to_owned() });
            };
            if node.values.len() > 1 {
                node.values.remove(index);
                return Ok(());
            }
        }
        let parent = if parent_path.is_empty() {
            &mut self.root
        } else {
            // The node exists, so its parent does.
            self.get_mut(parent_path).ok_or_else(|| EditError::NotFound(path_to_string(parent_path)))?
        };
        parent.remove_child(last);
        if parent.tag
            && parent.children.is_empty()
            && let Some((tag_name, grand_path)) = parent_path.split_last()
        {
            let grand = if grand_path.is_empty() { Some(&mut self.root) } else { self.get_mut(grand_path) };
            if let Some(grand) = grand {
                grand.remove_child(tag_name);
            }
        }
        Ok(())
    }

    /// Sets (or with `None`/empty, clears) the comment of an existing node.
    pub fn set_comment<S: AsRef<str>>(&mut self, path: &[S], comment: Option<&str>) -> Result<(), EditError> {
        let words: Vec<&str> = path.iter().map(AsRef::as_ref).collect();
        if words.is_empty() {
            return Err(EditError::EmptyPath);
        }
        if comment.is_some_and(|c| c.contains("*/")) {
            return Err(EditError::InvalidComment(path_to_string(&words)));
        }
        let node = self.get_mut(&words).ok_or_else(|| EditError::NotFound(path_to_string(&words)))?;
        node.set_comment(comment.map(str::to_owned));
        Ok(())
    }

    /// Inserts a whole subtree at a path, creating intermediate nodes and replacing any node
    /// already there.
    pub fn insert_subtree<S: AsRef<str>>(&mut self, parent_path: &[S], node: Node) {
        let mut parent = &mut self.root;
        for name in parent_path {
            parent = parent.child_or_insert(name.as_ref());
        }
        parent.insert_child(node);
    }

    /// The part of the tree under the given paths: each path's subtree with its ancestors (and
    /// their comments and tag flags), nothing else. Paths that do not exist are ignored.
    pub fn mask<S: AsRef<str>>(&self, scopes: &[Vec<S>]) -> Tree {
        let mut out = Tree::new();
        for scope in scopes {
            let words: Vec<&str> = scope.iter().map(AsRef::as_ref).collect();
            if words.is_empty() {
                return self.clone();
            }
            let mut src = &self.root;
            let mut dst = &mut out.root;
            for (i, name) in words.iter().enumerate() {
                let Some(child) = src.child(name) else {
                    break;
                };
                if i + 1 == words.len() {
                    dst.insert_child(child.clone());
                } else {
                    let exists = dst.child(name).is_some();
                    let next = dst.child_or_insert(name);
                    if !exists {
                        next.values.clone_from(&child.values);
                        next.comment.clone_from(&child.comment);
                        next.tag = child.tag;
                    }
                    dst = next;
                }
                src = child;
            }
        }
        out
    }

    /// The tree without the given subtrees. Paths that do not exist are ignored.
    pub fn without<S: AsRef<str>>(&self, paths: &[Vec<S>]) -> Tree {
        let mut out = self.clone();
        for path in paths {
            let words: Vec<&str> = path.iter().map(AsRef::as_ref).collect();
            if words.is_empty() {
                return Tree::new();
            }
            if out.exists(&words) {
                // Remove without pruning: the caller asked for exactly these subtrees.
                if let Some((last, parent)) = words.split_last() {
                    let parent = if parent.is_empty() { Some(&mut out.root) } else { out.get_mut(parent) };
                    if let Some(parent) = parent {
                        parent.remove_child(last);
                    }
                }
            }
        }
        out
    }

    /// Number of nodes (the root excluded).
    pub fn count_nodes(&self) -> usize {
        self.root.count_nodes() - 1
    }

    /// Every leaf path with its values, in tree order.
    pub fn leaves(&self) -> Vec<(Vec<&str>, &Node)> {
        let mut out = Vec::new();
        let mut prefix = Vec::new();
        self.root.walk(&mut prefix, &mut |path, node| {
            if node.is_leaf() {
                out.push((path.to_vec(), node));
            }
        });
        out
    }

    /// Copies tag flags from `reference` for nodes at the same path, and reinterprets nodes
    /// whose only children are valueless leaves as leaf values where `reference` holds a leaf
    /// with values at that path.
    ///
    /// Command lists cannot say whether a trailing unquoted word is a value or a node
    /// (`set system host-name r1`); VyOS decides with its schema. The running configuration
    /// read from a router carries that knowledge, so conforming the desired tree to it makes
    /// both spell the same configuration the same way before they are compared.
    pub fn conform_to(&mut self, reference: &Tree) {
        conform_node(&mut self.root, Some(&reference.root));
    }
}

fn conform_node(node: &mut Node, reference: Option<&Node>) {
    let Some(reference) = reference else { return };
    if reference.tag {
        node.tag = true;
    }
    let reference_is_value_leaf = reference.children.is_empty() && !reference.values.is_empty();
    if reference_is_value_leaf
        && node.values.is_empty()
        && !node.children.is_empty()
        && node.children.iter().all(|c| c.children.is_empty() && c.values.is_empty() && !c.tag)
    {
        // Keep the reference's value order for values both have, then the rest.
        let mut names: Vec<String> = node.children.iter().map(|c| c.name.clone()).collect();
        names.sort_by_key(|n| reference.values.iter().position(|v| v == n).unwrap_or(usize::MAX));
        node.values = names;
        node.children.clear();
        return;
    }
    for child in &mut node.children {
        let reference_child = reference.child(&child.name);
        conform_node(child, reference_child);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_tags(_: &[&str]) -> bool {
        false
    }

    #[test]
    fn set_creates_sorted_children() {
        let mut t = Tree::new();
        t.set(&["interfaces", "ethernet", "eth10"], None, ValueBehaviour::Add, &no_tags).unwrap();
        t.set(&["interfaces", "ethernet", "eth2"], None, ValueBehaviour::Add, &no_tags).unwrap();
        let names: Vec<&str> = t.get(&["interfaces", "ethernet"]).unwrap().children().iter().map(Node::name).collect();
        assert_eq!(names, ["eth2", "eth10"]);
    }

    #[test]
    fn set_value_behaviours() {
        let mut t = Tree::new();
        t.set(&["system", "host-name"], Some("a"), ValueBehaviour::Replace, &no_tags).unwrap();
        t.set(&["system", "host-name"], Some("b"), ValueBehaviour::Replace, &no_tags).unwrap();
        assert_eq!(t.values(&["system", "host-name"]), ["b"]);
        t.set(&["system", "name-server"], Some("1"), ValueBehaviour::Add, &no_tags).unwrap();
        t.set(&["system", "name-server"], Some("2"), ValueBehaviour::Add, &no_tags).unwrap();
        assert!(!t.set(&["system", "name-server"], Some("2"), ValueBehaviour::Add, &no_tags).unwrap());
        assert_eq!(t.values(&["system", "name-server"]), ["1", "2"]);
    }

    #[test]
    fn set_refuses_inconsistent_shapes() {
        let mut t = Tree::new();
        t.set(&["a", "b", "c"], None, ValueBehaviour::Add, &no_tags).unwrap();
        assert_eq!(
            t.set(&["a", "b"], Some("v"), ValueBehaviour::Add, &no_tags),
            Err(EditError::ValueOnInnerNode("a b".into()))
        );
        t.set(&["x", "y"], Some("v"), ValueBehaviour::Add, &no_tags).unwrap();
        assert_eq!(
            t.set(&["x", "y", "z"], None, ValueBehaviour::Add, &no_tags),
            Err(EditError::ChildOfValueNode("x y".into()))
        );
        assert!(matches!(
            t.set(&["x", "bad name"], None, ValueBehaviour::Add, &no_tags),
            Err(EditError::InvalidName(_))
        ));
    }

    #[test]
    fn delete_value_and_prune_tag() {
        let mut t = Tree::new();
        let tags = |p: &[&str]| p == ["interfaces", "ethernet"];
        t.set(&["interfaces", "ethernet", "eth0", "address"], Some("a"), ValueBehaviour::Add, &tags).unwrap();
        t.set(&["interfaces", "ethernet", "eth0", "address"], Some("b"), ValueBehaviour::Add, &tags).unwrap();
        assert!(t.get(&["interfaces", "ethernet"]).unwrap().is_tag());
        t.delete(&["interfaces", "ethernet", "eth0", "address"], Some("a")).unwrap();
        assert_eq!(t.values(&["interfaces", "ethernet", "eth0", "address"]), ["b"]);
        t.delete(&["interfaces", "ethernet", "eth0", "address"], Some("b")).unwrap();
        assert!(!t.exists(&["interfaces", "ethernet", "eth0", "address"]));
        t.delete(&["interfaces", "ethernet", "eth0"], None).unwrap();
        // The tag node went with its last tag value; `interfaces` stays.
        assert!(!t.exists(&["interfaces", "ethernet"]));
        assert!(t.exists(&["interfaces"]));
        assert_eq!(t.delete(&["nope"], None), Err(EditError::NotFound("nope".into())));
    }

    #[test]
    fn comments() {
        let mut t = Tree::new();
        t.set(&["a"], None, ValueBehaviour::Add, &no_tags).unwrap();
        t.set_comment(&["a"], Some("hello")).unwrap();
        assert_eq!(t.get(&["a"]).unwrap().comment(), Some("hello"));
        t.set_comment(&["a"], Some("")).unwrap();
        assert_eq!(t.get(&["a"]).unwrap().comment(), None);
        // Found by the round-trip property: `comment a '\t'` rendered as `/* \t */`, which reads
        // back as no comment. Comments are trimmed as the hierarchical format reads them.
        t.set_comment(&["a"], Some("\t")).unwrap();
        assert_eq!(t.get(&["a"]).unwrap().comment(), None);
        t.set_comment(&["a"], Some(" x y\n")).unwrap();
        assert_eq!(t.get(&["a"]).unwrap().comment(), Some("x y"));
        assert!(matches!(t.set_comment(&["a"], Some("x */ y")), Err(EditError::InvalidComment(_))));
        assert!(matches!(t.set_comment(&["b"], Some("x")), Err(EditError::NotFound(_))));
    }

    #[test]
    fn mask_and_without() {
        let mut t = Tree::new();
        for p in [["a", "b", "c"], ["a", "x", "y"], ["z", "z", "z"]] {
            t.set(&p, None, ValueBehaviour::Add, &no_tags).unwrap();
        }
        let m = t.mask(&[vec!["a", "b"], vec!["missing"]]);
        assert!(m.exists(&["a", "b", "c"]));
        assert!(!m.exists(&["a", "x"]));
        assert!(!m.exists(&["z"]));
        let w = t.without(&[vec!["a", "b"]]);
        assert!(!w.exists(&["a", "b"]));
        assert!(w.exists(&["a", "x", "y"]));
    }

    #[test]
    fn conform_turns_trailing_words_into_values() {
        let mut reference = Tree::new();
        reference.set(&["system", "host-name"], Some("r1"), ValueBehaviour::Add, &no_tags).unwrap();
        reference
            .set(&["interfaces", "ethernet", "eth0"], None, ValueBehaviour::Add, &|p: &[&str]| {
                p == ["interfaces", "ethernet"]
            })
            .unwrap();
        let mut desired = Tree::new();
        desired.set(&["system", "host-name", "r2"], None, ValueBehaviour::Add, &no_tags).unwrap();
        desired.set(&["interfaces", "ethernet", "eth1"], None, ValueBehaviour::Add, &no_tags).unwrap();
        desired.conform_to(&reference);
        assert_eq!(desired.values(&["system", "host-name"]), ["r2"]);
        assert!(desired.get(&["interfaces", "ethernet"]).unwrap().is_tag());
    }
}
