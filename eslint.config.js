// Lint: type-aware rules (no floating promises), import boundaries between packages
// (public entries only), and no import cycles.
import tseslint from 'typescript-eslint';
import importX from 'eslint-plugin-import-x';

export default tseslint.config(
  {
    ignores: ['**/dist/**', '**/build/**', 'node_modules/**', '**/*.d.ts', '.gpu/**', 'out/**'],
  },
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    languageOptions: {
      parserOptions: { project: ['./tsconfig.eslint.json'], tsconfigRootDir: import.meta.dirname },
    },
    plugins: { 'import-x': importX },
    settings: {
      'import-x/resolver-next': [importX.createNodeResolver({ extensions: ['.ts', '.js'] })],
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_' },
      ],
      '@typescript-eslint/no-non-null-assertion': 'off',
      'import-x/no-cycle': ['error', { ignoreExternal: true }],
      'import-x/no-self-import': 'error',
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['@spinmesh/*/*'],
              message:
                'Import a package through its public entry (@spinmesh/<name>), not its files.',
            },
            {
              group: [
                '../../packages/*',
                '../../../packages/*',
                '../../services/*',
                '**/packages/*/src/**',
              ],
              message: 'Import a sibling package through @spinmesh/<name>, not a relative path.',
            },
          ],
        },
      ],
    },
  },
  {
    // Package layering: kernels imports no other package; model imports only kernels.
    files: ['packages/kernels/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['@spinmesh/*'], message: 'kernels depends on no other spinmesh package.' },
          ],
        },
      ],
    },
  },
  {
    files: ['packages/model/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['@spinmesh/*', '!@spinmesh/kernels'],
              message: 'model depends only on @spinmesh/kernels.',
            },
            {
              group: ['ioredis', '@grpc/*', 'prom-client', 'node:net', 'node:http'],
              message: 'model is a pure library.',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    ...tseslint.configs.disableTypeChecked,
  },
);
