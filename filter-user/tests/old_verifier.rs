//! Linux 6.1 (Debian 12's kernel) is the oldest kernel xdpwall supports, and its
//! verifier refuses something later ones accept: a loop whose back-edge is the
//! fall-through of a plain instruction (check_cfg: "back-edge from insn N to N+1").
//! LLVM produces one when it rotates a loop so that it is entered by a jump to its
//! condition and the body runs straight into that condition. `cargo xtask vmtest` proves
//! the program loads on 6.1; this test finds such a loop in seconds on any host, by
//! walking the compiled object's control flow the way 6.1's check_cfg does.

use aya_obj::{Object, generated::bpf_insn};

const BPF_JMP: u8 = 0x05;
const BPF_JMP32: u8 = 0x06;
const BPF_JA: u8 = 0x00;
const BPF_CALL: u8 = 0x80;
const BPF_EXIT: u8 = 0x90;

/// Edges out of instruction `t`, fall-through first (check_cfg's order), each with
/// whether 6.1 lets it close a loop (jumps yes; plain fall-through and calls no).
fn edges(insns: &[bpf_insn], t: usize) -> Vec<(usize, bool)> {
    let insn = &insns[t];
    let class = insn.code & 0x07;
    if class != BPF_JMP && class != BPF_JMP32 {
        return vec![(t + 1, false)];
    }
    let target = (t as i64 + 1 + i64::from(insn.off)) as usize;
    match insn.code & 0xf0 {
        BPF_EXIT => vec![],
        BPF_CALL => vec![(t + 1, false)],
        BPF_JA if class == BPF_JMP => vec![(target, true)],
        _ => vec![(t + 1, true), (target, true)],
    }
}

/// Back-edges 6.1 rejects, as (from, to), found by the same depth-first walk.
fn rejected_back_edges(insns: &[bpf_insn]) -> Vec<(usize, usize)> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        New,
        OnStack,
        Done,
    }
    let mut state = vec![State::New; insns.len()];
    let mut bad = Vec::new();
    if insns.is_empty() {
        return bad;
    }
    let mut stack = vec![(0usize, edges(insns, 0).into_iter())];
    state[0] = State::OnStack;
    while let Some((t, out)) = stack.last_mut() {
        let t = *t;
        match out.next() {
            Some((w, loop_ok)) if w < insns.len() => match state[w] {
                State::New => {
                    state[w] = State::OnStack;
                    stack.push((w, edges(insns, w).into_iter()));
                }
                State::OnStack if !loop_ok => bad.push((t, w)),
                _ => {}
            },
            Some(_) => {}
            None => {
                state[t] = State::Done;
                stack.pop();
            }
        }
    }
    bad
}

#[test]
fn no_loop_the_6_1_verifier_rejects() {
    let object = Object::parse(filter_user::dataplane::ebpf_object()).expect("parsing the eBPF object");
    let mut bad = Vec::new();
    for function in object.functions.values() {
        for (from, to) in rejected_back_edges(&function.instructions) {
            bad.push(format!("{}: back-edge from insn {from} to {to}", function.name));
        }
    }
    assert!(object.functions.len() > 3, "the object has too few functions to be xdpwall's");
    assert!(bad.is_empty(), "Linux 6.1's verifier would reject: {bad:#?}");
}

fn insn(code: u8, off: i16) -> bpf_insn {
    // SAFETY: bpf_insn is plain data; all zeroes is a valid value.
    let mut i: bpf_insn = unsafe { std::mem::zeroed() };
    i.code = code;
    i.off = off;
    i
}

/// The shape LLVM gave the classifier's field loop, which 6.1 refused.
#[test]
fn finds_a_rotated_loop_and_accepts_a_jump_closed_one() {
    let mov = insn(0xb7, 0); // r = imm
    let add = insn(0x07, 0); // r += imm
    let exit = insn(BPF_JMP | BPF_EXIT, 0);
    let rotated = [
        mov,
        insn(BPF_JMP | BPF_JA, 3), // 1: goto 5 (the condition)
        mov,                       // 2: body
        add,
        mov,            // 4: runs into the condition
        insn(0x55, -4), // 5: if r != imm goto 2
        exit,
    ];
    assert_eq!(rejected_back_edges(&rotated), [(4, 5)]);

    let closed_by_jump = [
        mov,
        add,            // 1: body
        insn(0x55, -2), // 2: if r != imm goto 1
        exit,
    ];
    assert!(rejected_back_edges(&closed_by_jump).is_empty());
}
