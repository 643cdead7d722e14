//! The input to the planner: a tree of directories and regular files given
//! by name, mode and size only (never contents), so that a layout can be
//! planned before a single data byte is read.

use crate::Error;

/// Index of a node in a [`Tree`]; the root is `NodeId(0)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub usize);

/// What a node is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    /// A regular file of the given size.
    File {
        /// Size in bytes.
        size: u64,
    },
    /// A directory with its children in insertion order (the planner sorts).
    Dir {
        /// Child nodes.
        children: Vec<NodeId>,
    },
}

/// One file or directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The name inside its parent (empty for the root).
    pub name: Vec<u8>,
    /// Permission bits (the file type bits are added by the planner).
    pub perm: u16,
    /// The parent directory (the root is its own parent).
    pub parent: NodeId,
    /// File or directory.
    pub kind: NodeKind,
}

/// A tree of names, permissions and sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    nodes: Vec<Node>,
}

/// Longest name EROFS stores (`EROFS_NAME_LEN`). mkfs.erofs 1.5 handles
/// one byte less ([`MAX_NAME_LEN_1_5`]); its planner refuses longer ones.
pub const MAX_NAME_LEN: usize = 255;

/// Longest name mkfs.erofs 1.5 handles correctly (it cuts 255-byte names).
pub const MAX_NAME_LEN_1_5: usize = 254;

impl Tree {
    /// A tree holding only a root directory with the given permission bits.
    pub fn new(root_perm: u16) -> Self {
        Self {
            nodes: vec![Node {
                name: Vec::new(),
                perm: root_perm,
                parent: NodeId(0),
                kind: NodeKind::Dir {
                    children: Vec::new(),
                },
            }],
        }
    }

    /// The root directory.
    pub const ROOT: NodeId = NodeId(0);

    /// Adds a directory under `parent`.
    pub fn add_dir(&mut self, parent: NodeId, name: &[u8], perm: u16) -> Result<NodeId, Error> {
        self.add(
            parent,
            name,
            perm,
            NodeKind::Dir {
                children: Vec::new(),
            },
        )
    }

    /// Adds a regular file of `size` bytes under `parent`.
    pub fn add_file(
        &mut self,
        parent: NodeId,
        name: &[u8],
        perm: u16,
        size: u64,
    ) -> Result<NodeId, Error> {
        self.add(parent, name, perm, NodeKind::File { size })
    }

    fn add(
        &mut self,
        parent: NodeId,
        name: &[u8],
        perm: u16,
        kind: NodeKind,
    ) -> Result<NodeId, Error> {
        let bad = |reason: &'static str| Error::BadName {
            path: self.path_of(parent, name),
            reason,
        };
        if name.is_empty() || name == b"." || name == b".." {
            return Err(bad("empty, `.` or `..`"));
        }
        if name.contains(&b'/') || name.contains(&0) {
            return Err(bad("contains `/` or NUL"));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(bad("longer than 255 bytes"));
        }
        let id = NodeId(self.nodes.len());
        match &mut self.nodes[parent.0].kind {
            NodeKind::Dir { children } => children.push(id),
            NodeKind::File { .. } => return Err(Error::NotADirectory(self.path(parent))),
        }
        self.nodes.push(Node {
            name: name.to_vec(),
            perm: perm & 0o7777,
            parent,
            kind,
        });
        Ok(id)
    }

    /// The first name mkfs.erofs 1.5 cannot store faithfully, if any: one
    /// of 255 bytes (it cuts it to 254) or one beginning with `lost+found`
    /// (it drops the entry and its subtree). mkfs.erofs 1.8.6 stores both.
    pub(crate) fn check_names_1_5(&self) -> Result<(), Error> {
        for (i, node) in self.nodes.iter().enumerate().skip(1) {
            let bad = |reason: &'static str| Error::BadName {
                path: self.path(NodeId(i)),
                reason,
            };
            if node.name.len() > MAX_NAME_LEN_1_5 {
                return Err(bad(
                    "longer than 254 bytes (mkfs.erofs 1.5, schema modelwrap-v1, truncates it)",
                ));
            }
            if node.name.starts_with(b"lost+found") {
                return Err(bad(
                    "begins with `lost+found` (mkfs.erofs 1.5, schema modelwrap-v1, silently drops such entries)",
                ));
            }
        }
        Ok(())
    }

    /// The node with this id.
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.0]
    }

    /// Number of nodes, root included.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always false: a tree has at least its root.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The `/`-separated path of a node relative to the root (`""` for the
    /// root), lossily decoded for messages.
    pub fn path(&self, id: NodeId) -> String {
        let mut parts = Vec::new();
        let mut cur = id;
        while cur != Self::ROOT {
            let n = &self.nodes[cur.0];
            parts.push(String::from_utf8_lossy(&n.name).into_owned());
            cur = n.parent;
        }
        parts.reverse();
        parts.join("/")
    }

    fn path_of(&self, parent: NodeId, name: &[u8]) -> String {
        let p = self.path(parent);
        let n = String::from_utf8_lossy(name);
        if p.is_empty() {
            n.into_owned()
        } else {
            format!("{p}/{n}")
        }
    }
}
