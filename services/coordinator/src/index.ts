export { Coordinator, type CoordinatorDeps } from './coordinator';
export { Reconciler, type ReconcilerOptions, type ReconcileResult } from './reconciler';
export { loadCoordinatorConfig, type CoordinatorConfig } from './config';
export { RetentionSweeper, type RetentionSweeperOptions, type SweepResult } from './retention';
export { Debouncer } from './debouncer';
export { BulkOperations, sliceBudget, type BulkOperationsOptions, type BulkPassResult } from './bulk-operations';
