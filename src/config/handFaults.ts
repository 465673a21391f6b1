import { parseFault } from '../netem/spec.js';
import type { Scenario } from './settings.js';

export const HAND_KINDS = ['reset', 'blackhole', 'delay'] as const;
export type HandKind = (typeof HAND_KINDS)[number];

/** Whether faults by hand are part of this run: `handFaults`, where `auto` means "with the terminal UI". */
export function handFaultsOn(s: Scenario, tui: boolean): boolean {
  return s.handFaults === 'on' || (s.handFaults === 'auto' && tui);
}

/**
 * The scenario with one manual fault per worker node and hand kind (`hand-reset-c2`, …),
 * which the terminal UI's keys fire. They travel to the nodes like any fault, so each node
 * has its carrier ready (a proxy per worker, or a kernel backend) before the start.
 */
export function withHandFaults(s: Scenario, tui: boolean): Scenario {
  if (!handFaultsOn(s, tui)) return s;
  const hand = [];
  for (let n = 1; n <= s.nodes; n++) {
    for (const kind of HAND_KINDS) {
      hand.push(
        parseFault(
          { id: `hand-${kind}-c${n}`, kind, manual: true, maxCount: 1000, duration: s.handFaultDuration, target: `chunk ${n}`, ...(kind === 'delay' ? { delay: `${s.handDelay}ms` } : {}) },
          s.faults.length + hand.length,
          () => '',
        ),
      );
    }
  }
  return { ...s, faults: [...s.faults, ...hand] };
}
