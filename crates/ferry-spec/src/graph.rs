//! Cycle finding in the dependency graph: Tarjan's strongly connected components, written
//! iteratively so that a long chain of 10,000 resources cannot overflow the stack.

use std::collections::VecDeque;

/// The strongly connected components that hold a cycle (more than one node, or a node with an
/// edge to itself), each sorted, in order of their smallest node.
pub(crate) fn cyclic_components(edges: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let count = edges.len();
    const UNSEEN: usize = usize::MAX;
    let mut index = vec![UNSEEN; count];
    let mut low_link = vec![0; count];
    let mut on_stack = vec![false; count];
    let mut stack = Vec::new();
    let mut next_index = 0;
    let mut components = Vec::new();
    // Each frame is a node and how many of its edges have been followed.
    let mut frames: Vec<(usize, usize)> = Vec::new();
    for start in 0..count {
        if index[start] != UNSEEN {
            continue;
        }
        frames.push((start, 0));
        index[start] = next_index;
        low_link[start] = next_index;
        next_index += 1;
        stack.push(start);
        on_stack[start] = true;
        while let Some(&mut (node, ref mut followed)) = frames.last_mut() {
            if let Some(&next) = edges[node].get(*followed) {
                *followed += 1;
                if index[next] == UNSEEN {
                    index[next] = next_index;
                    low_link[next] = next_index;
                    next_index += 1;
                    stack.push(next);
                    on_stack[next] = true;
                    frames.push((next, 0));
                } else if on_stack[next] {
                    low_link[node] = low_link[node].min(index[next]);
                }
                continue;
            }
            frames.pop();
            if let Some(&(parent, _)) = frames.last() {
                low_link[parent] = low_link[parent].min(low_link[node]);
            }
            if low_link[node] == index[node] {
                let mut component = Vec::new();
                while let Some(member) = stack.pop() {
                    on_stack[member] = false;
                    component.push(member);
                    if member == node {
                        break;
                    }
                }
                let cyclic = component.len() > 1 || edges[node].contains(&node);
                if cyclic {
                    component.sort_unstable();
                    components.push(component);
                }
            }
        }
    }
    components.sort();
    components
}

/// One shortest cycle through the smallest node of a component: the nodes in order, starting
/// and ending with that node.
pub(crate) fn cycle_through(component: &[usize], edges: &[Vec<usize>]) -> Vec<usize> {
    let start = component[0];
    let inside = |node: &usize| component.binary_search(node).is_ok();
    let mut came_from: std::collections::HashMap<usize, usize> = Default::default();
    let mut queue = VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for &next in edges[node].iter().filter(|next| inside(next)) {
            if next == start {
                // Walk back from the last node to the start, then turn it around.
                let mut back = Vec::new();
                let mut current = node;
                while current != start {
                    back.push(current);
                    current = came_from[&current];
                }
                let mut path = vec![start];
                path.extend(back.into_iter().rev());
                path.push(start);
                return path;
            }
            if next != start && !came_from.contains_key(&next) {
                came_from.insert(next, node);
                queue.push_back(next);
            }
        }
    }
    vec![start, start]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cycles_and_walks_them_in_order() {
        // 0 -> 1 -> 2 -> 0, 3 -> 3, 4 -> 0
        let edges = vec![vec![1], vec![2], vec![0], vec![3], vec![0]];
        let components = cyclic_components(&edges);
        assert_eq!(components, vec![vec![0, 1, 2], vec![3]]);
        assert_eq!(cycle_through(&components[0], &edges), vec![0, 1, 2, 0]);
        assert_eq!(cycle_through(&components[1], &edges), vec![3, 3]);
    }

    #[test]
    fn a_long_chain_does_not_overflow() {
        let count = 100_000;
        let edges: Vec<Vec<usize>> = (0..count)
            .map(|node| {
                if node + 1 < count {
                    vec![node + 1]
                } else {
                    vec![]
                }
            })
            .collect();
        assert!(cyclic_components(&edges).is_empty());
    }
}
