// meridian/chaos: verification specs, fault schedules, histories and their checkers, the
// real-process runner behind `meridian verify`, and the deterministic simulation.
export { AppProcess, SmallFilesystem } from './app-process.ts';
export type { ClusterServices } from './cluster-deployment.ts';
export {
  type Completion,
  countOperations,
  History,
  type HistoryEvent,
  type Operation,
  type OperationCounts,
  type OperationRequest,
  type OperationStatus,
} from './history.ts';
export { completionOf, type JsonAnswer, requestJson } from './http-client.ts';
export {
  type AppViolation,
  type CheckOutcome,
  checkInvariants,
  type InvariantResult,
  type Invariants,
  type SagaState,
  type Violation,
} from './invariants.ts';
export {
  checkLinearizable,
  type LinearizabilityOptions,
  type LinearizabilityResult,
  type Model,
  registerModel,
} from './linearizability.ts';
export {
  type FaultRecord,
  formatDuration,
  formatReport,
  replayCommand,
  replayEnvironment,
  type VerifyReport,
} from './report.ts';
export { runVerify, type VerifyOptions, type VerifyRun } from './runner.ts';
export { describeFault, drawSchedule, type Fault, type ScheduleOptions } from './schedule.ts';
export { formatShrunk, type ShrunkRun, shrinkRun } from './shrink-run.ts';
export {
  drawSimulation,
  runSchedule,
  type SeedsResult,
  type SimulationClient,
  type SimulationResult,
  type SimulationSpec,
  type SimulationStep,
  shrink,
  simulate,
  simulateSeeds,
} from './simulation.ts';
export type {
  SimulatedHttp,
  SimulatedRequest,
  SimulatedResponse,
  SimulatedServices,
} from './simulation-http.ts';
export { formatSimulation, isSimulationSpec } from './simulation-report.ts';
export { simulateSeedsOnThreads } from './simulation-threads.ts';
export {
  type AppHandle,
  type ClusterContext,
  type ClusterSpec,
  type DependencyMode,
  defineVerifySpec,
  isVerifySpec,
  type ProcessCommand,
  type StartContext,
  type VerifySpec,
  type Workload,
} from './spec.ts';
