// Lint: typescript-eslint's recommended-type-checked rules on every TypeScript file (type-aware, so a misuse of a
// promise or an `any` leaking out of a library is caught), and the plain recommended rules on the browser scripts.
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/', 'dist/', 'cdktf.out/', '.build/', '.gen/', 'coverage/', '**/*.d.ts'] },
  js.configs.recommended,
  {
    files: ['**/*.ts'],
    extends: [tseslint.configs.recommendedTypeChecked],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
  },
  {
    // The demo page and the UMD client run in browsers (and the client in Node too).
    files: ['service/public/**/*.js'],
    languageOptions: { sourceType: 'script', globals: { ...globals.browser, ...globals.node } },
  },
  {
    files: ['**/*.{js,mjs,cjs}'],
    ignores: ['service/public/**'],
    languageOptions: { globals: globals.node },
  },
);
