export { run, buildProgram } from './main';
