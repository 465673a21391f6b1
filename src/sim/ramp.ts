import { chunkRange } from './chunks.js';

/**
 * Ramps: the run's workers join in steps (e.g. 250, 500, … 4000), each step held for `hold`
 * rounds. Every node computes the same plan from the scenario, so the server knows how many
 * updates close each round and each worker knows the round it joins, with no messages.
 *
 * A step's workers are spread over the chunks in proportion (not chunk 1 first), so every
 * node carries its share of the load from the first step on.
 */
export interface RampPlan {
  /** Active workers per step, increasing; the last is the run's `workers`. */
  readonly steps: readonly number[];
  /** Rounds each step is held. */
  readonly hold: number;
  /** Chunks the workers are split into (the scenario's nodes). */
  readonly nodes: number;
}

/** Step index (0-based) of round `r` (1-based). */
export function stepOfRound(plan: RampPlan, round: number): number {
  return Math.min(plan.steps.length - 1, Math.floor((round - 1) / plan.hold));
}

/** Workers of chunk n (1-based) active in a step with `active` workers over the whole run. */
export function activeInChunk(plan: RampPlan, n: number, active: number): number {
  const total = plan.steps[plan.steps.length - 1];
  const size = chunkRange({ n, k: plan.nodes }, total).count;
  const share = Math.floor((n * active) / plan.nodes) - Math.floor(((n - 1) * active) / plan.nodes);
  return Math.min(size, share);
}

/** Updates that close round `r`: the sum over chunks of their active workers. */
export function expectedInRound(plan: RampPlan, round: number): number {
  const active = plan.steps[stepOfRound(plan, round)];
  let n = 0;
  for (let c = 1; c <= plan.nodes; c++) n += activeInChunk(plan, c, active);
  return n;
}

/** The round (1-based) in which the worker at `local` (0-based within chunk `chunk`) sends its first update. */
export function joinRound(plan: RampPlan, chunk: { readonly n: number }, local: number): number {
  for (let s = 0; s < plan.steps.length; s++) {
    if (local < activeInChunk(plan, chunk.n, plan.steps[s])) return s * plan.hold + 1;
  }
  return (plan.steps.length - 1) * plan.hold + 1;
}

/** Rounds of the whole ramp. */
export function rampRounds(plan: RampPlan): number {
  return plan.steps.length * plan.hold;
}

