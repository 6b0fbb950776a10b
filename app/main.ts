// Entry of `npm run synth` and of cdktf.json's "app" (both through app/run-synth.js, which compiles this file): the ops
// CLI's synth command, so synth takes the same --config/--ledger-dir/--artifacts-dir options and RELAY_* variables.
import { runCliProcess } from './cli';

runCliProcess(['synth', ...process.argv.slice(2)]);
