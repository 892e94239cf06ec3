// Worker threads do not inherit the parent's module hooks in Node 20: register tsx here, then load
// the TypeScript entry.
import { register } from 'tsx/esm/api';

register();
await import('./thread.ts');
