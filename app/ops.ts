// Entry of `npm run ops -- <command>`: the ops CLI (app/cli.ts) on this process's arguments.
import { runCliProcess } from './cli';

runCliProcess(process.argv.slice(2));
