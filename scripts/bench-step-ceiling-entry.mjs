// Worker threads do not inherit the parent's module hooks in Node 20: register tsx here, then load
// the step-ceiling script, whose thread side runs when workerData names its task.
import { register } from 'tsx/esm/api';

register();
await import('./bench-step-ceiling.ts');
