import {
  formatBytes,
  formatDuration,
  formatMemory,
  formatPercent,
  shortGpuName,
  tunnelStateText,
  tunnelTone
} from '../format';

describe('shortGpuName', () => {
  it.each([
    ['Tesla T4', 'T4'],
    ['NVIDIA A100-SXM4-40GB', 'A100 40GB'],
    ['NVIDIA A100-SXM4-80GB', 'A100 80GB'],
    ['NVIDIA H100 80GB HBM3', 'H100 80GB'],
    ['NVIDIA H100 PCIe', 'H100'],
    ['NVIDIA L4', 'L4'],
    ['Tesla V100-SXM2-16GB', 'V100 16GB'],
    ['Tesla P100-PCIE-16GB', 'P100 16GB'],
    ['NVIDIA GeForce RTX 3090', 'RTX 3090'],
    ['NVIDIA A100-SXM4-40GB MIG 1g.5gb', 'A100 40GB MIG 1g.5gb'],
    ['NVIDIA', 'NVIDIA'],
    [null, 'GPU'],
    ['', 'GPU']
  ])('%s -> %s', (name, short) => {
    expect(shortGpuName(name)).toBe(short);
  });
});

describe('bytes and percents', () => {
  it('writes GiB, one decimal below 10', () => {
    expect(formatBytes(15 * 2 ** 30)).toBe('15 GiB');
    expect(formatBytes(1.25 * 2 ** 30)).toBe('1.3 GiB');
    expect(formatBytes(512 * 2 ** 20)).toBe('512 MiB');
    expect(formatBytes(0)).toBe('0 MiB');
    expect(formatBytes(null)).toBe('?');
    expect(formatBytes(-1)).toBe('?');
  });

  it('writes memory as used/total in one unit where it can', () => {
    expect(formatMemory(1.5 * 2 ** 30, 15 * 2 ** 30)).toBe('1.5/15 GiB');
    expect(formatMemory(300 * 2 ** 20, 15 * 2 ** 30)).toBe('300 MiB/15 GiB');
    expect(formatMemory(null, 15 * 2 ** 30)).toBe('?/15 GiB');
  });

  it('writes percents, ? when unknown', () => {
    expect(formatPercent(37.4)).toBe('37%');
    expect(formatPercent(null)).toBe('?%');
  });
});

describe('formatDuration', () => {
  it.each([
    [0, '0s'],
    [45.9, '45s'],
    [60, '1m'],
    [12 * 60 + 59, '12m'],
    [3600 + 5 * 60, '1h 05m'],
    [11 * 3600 + 2 * 60, '11h 02m'],
    [3 * 86400 + 4 * 3600, '3d 4h'],
    [-5, '0s']
  ])('%d s -> %s', (seconds, text) => {
    expect(formatDuration(seconds)).toBe(text);
  });
});

describe('tunnel state', () => {
  it('reads without colour: each state has words and a tone', () => {
    expect(tunnelStateText('ready')).toBe('ready');
    expect(tunnelStateText('backoff')).toBe('restarting');
    expect(tunnelStateText('stopped')).toBe('stopped');
    expect(tunnelTone('ready')).toBe('good');
    expect(tunnelTone('connecting')).toBe('busy');
    expect(tunnelTone('backoff')).toBe('busy');
    expect(tunnelTone('failed')).toBe('bad');
    expect(tunnelTone('stopped')).toBe('bad');
    expect(tunnelTone('off')).toBe('bad');
  });
});
