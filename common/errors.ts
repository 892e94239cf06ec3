/**
 * Typed errors with stable machine codes. An error whose `expected` flag is set is a user-facing
 * failure (bad flag, missing file, offline): the CLI prints its message without a stack trace.
 */
export class DtrainError extends Error {
  readonly code: string;
  /** True for failures a user can fix (bad input, missing data); the CLI prints no stack for these. */
  readonly expected: boolean;
  constructor(code: string, message: string, options: { expected?: boolean; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.expected = options.expected ?? true;
  }
}

/** A CLI flag, environment variable or config value is out of range or malformed. */
export class ConfigError extends DtrainError {
  constructor(message: string) {
    super('DTRAIN_ERR_CONFIG', message);
  }
}

/** A dataset file is missing, truncated, corrupt, or cannot be downloaded. */
export class DataError extends DtrainError {
  constructor(code: string, message: string, cause?: unknown) {
    super(code, message, { cause });
  }
}

/** No requested compute backend could be loaded. */
export class BackendError extends DtrainError {
  constructor(message: string, cause?: unknown) {
    super('DTRAIN_ERR_BACKEND', message, { cause });
  }
}

/** A checkpoint is missing, unreadable, or does not match the model being trained. */
export class CheckpointError extends DtrainError {
  constructor(message: string, cause?: unknown) {
    super('DTRAIN_ERR_CHECKPOINT', message, { cause });
  }
}

/** Shapes or sizes disagree: "Expected X, but got Y". */
export class ShapeError extends DtrainError {
  constructor(message: string) {
    super('DTRAIN_ERR_SHAPE', message, { expected: false });
  }
}
